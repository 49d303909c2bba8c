"""ALBERT: factorised embeddings, one layer shared by every depth, MLM + sentence order."""
from lm_jax import config as config_lib
from lm_jax.data import encoder_examples
from lm_jax.families import base, bert as bert_family
from lm_jax.models import albert
from lm_jax.objectives import losses


def check(c):
  base.check_transformer(c)
  config_lib.check(c.model.hidden_act in ("gelu", "gelu_new"),
             f"model.hidden_act={c.model.hidden_act!r} is not one of ('gelu', 'gelu_new').")


FAMILY = base.Family(
    name="albert", model=albert.AlbertForPreTraining, loss=losses.albert_pretraining,
    examples=encoder_examples.SentenceOrderExamples, config_file="albert", check=check,
    progress_metrics=("loss", "mlm_accuracy", "sop_accuracy"),
    validate_overrides={**bert_family.SMALLER_ENCODER, "model.embedding_size": 32})
