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


def synthetic_batch(config, rng):
  """An ALBERT batch: sentence pairs, MLM targets, sentence-order labels, random content."""
  return bert_family.sentence_pair_batch(config, rng, "sop_labels")


def flops_per_token(config, params=None):
  """ALBERT: 6 * (N + V * E) + 12 * L * T * d, where N counts what a token passes
  through: the embedding projection E -> d, the one shared layer once per depth
  (L times, though its parameters exist once), pooler, SOP classifier, MLM head
  (dense d -> E, LayerNorm) and decoder bias; V * E is the decoder tied to the
  size-E word embeddings, over every position. Analytic, shared with the PyTorch
  peer (see bert.flops_per_token); `params` is unused."""
  del params
  m = config.model
  d, e, v, n_layers = m.hidden_size, m.embedding_size, m.vocab_size, m.num_hidden_layers
  n = ((e * d + d) + n_layers * bert_family.layer_params(d, m.intermediate_size)
       + (d * d + d) + (2 * d + 2)    # pooler, SOP classifier
       + (d * e + e + 2 * e) + v)     # MLM head (dense, LayerNorm), decoder bias
  return bert_family.transformer_flops(n + v * e, n_layers, config.data.seq_len, d)


FAMILY = base.Family(
    name="albert", model=albert.AlbertForPreTraining, loss=losses.albert_pretraining,
    examples=encoder_examples.SentenceOrderExamples, config_file="albert", check=check,
    progress_metrics=("loss", "mlm_accuracy", "sop_accuracy"),
    validate_overrides={**bert_family.SMALLER_ENCODER, "model.embedding_size": 32},
    synthetic_batch=synthetic_batch, flops_per_token=flops_per_token)
