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


def synthetic_batch(config, rng):
  """A RoBERTa batch: full-sentence rows of one token type, MLM targets, random content."""
  return bert_family.masked_lm_batch(config, rng)


def flops_per_token(config, params=None):
  """RoBERTa: 6 * (N_non-embedding + V * d) + 12 * L * T * d, N_non-embedding = L
  encoder layers + LM head (dense, LayerNorm) + decoder bias (no pooler); V * d is
  the tied decoder over every position. Analytic, shared with the PyTorch peer
  (see bert.flops_per_token); `params` is unused."""
  del params
  m = config.model
  d, v, n_layers = m.hidden_size, m.vocab_size, m.num_hidden_layers
  n = n_layers * bert_family.layer_params(d, m.intermediate_size) + (d * d + 3 * d) + v
  return bert_family.transformer_flops(n + v * d, n_layers, config.data.seq_len, d)


FAMILY = base.Family(
    name="roberta", model=roberta.RobertaForMaskedLM, loss=losses.masked_lm,
    examples=encoder_examples.FullSentenceExamples, config_file="roberta", check=check,
    progress_metrics=("loss", "mlm_accuracy"),
    validate_overrides={**bert_family.SMALLER_ENCODER, "model.max_position_embeddings": 66},
    synthetic_batch=synthetic_batch, flops_per_token=flops_per_token)
