"""ELECTRA: a small MLM generator and a discriminator detecting replaced tokens."""
from lm_jax import config as config_lib
from lm_jax.data import encoder_examples
from lm_jax.families import base, bert as bert_family
from lm_jax.models import electra
from lm_jax.objectives import losses


def check(c):
  base.check_transformer(c)
  m = c.model
  config_lib.check(m.generator_hidden_size % m.generator_num_attention_heads == 0,
             f"model.generator_hidden_size={m.generator_hidden_size} is not divisible by "
             f"model.generator_num_attention_heads={m.generator_num_attention_heads}; pick a "
             "head count that divides it.")


FAMILY = base.Family(
    name="electra", model=electra.ElectraForPreTraining, loss=losses.electra_pretraining,
    examples=encoder_examples.ReplacedTokenExamples, config_file="electra", check=check,
    progress_metrics=("loss", "mlm_accuracy", "disc_accuracy"),
    validate_overrides={**bert_family.SMALLER_ENCODER, "model.embedding_size": 48,
                        "model.generator_intermediate_size": 64})
