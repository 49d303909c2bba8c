"""RoBERTa: BERT's encoder, masked LM alone on full sentences, dynamic masking."""
from lm_jax import config as config_lib
from lm_jax.data import encoder_examples
from lm_jax.families import base, bert as bert_family
from lm_jax.models import roberta
from lm_jax.objectives import losses


def check(c):
  base.check_transformer(c)
  d, m = c.data, c.model
  config_lib.check(d.seq_len <= config_lib.max_sequence_length(m),
             f"data.seq_len={d.seq_len} needs model.max_position_embeddings >= "
             f"{d.seq_len + m.pad_token_id + 1} (RoBERTa's positions start at pad_token_id + 1); "
             "raise it or lower data.seq_len.")


FAMILY = base.Family(
    name="roberta", model=roberta.RobertaForMaskedLM, loss=losses.masked_lm,
    examples=encoder_examples.FullSentenceExamples, config_file="roberta", check=check,
    progress_metrics=("loss", "mlm_accuracy"),
    validate_overrides={**bert_family.SMALLER_ENCODER, "model.max_position_embeddings": 66})
