"""ELECTRA: a small MLM generator and a discriminator detecting replaced tokens."""
import numpy as np

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


def synthetic_batch(config, rng):
  """An ELECTRA batch: full-sentence MLM inputs and targets plus the uniforms that
  pick the generator's samples, random content."""
  b, p = config.train.batch_size, config.data.max_predictions_per_seq
  return dict(bert_family.masked_lm_batch(config, rng),
              replacement_uniform=rng.random((b, p), dtype=np.float32))


def flops_per_token(config, params=None):
  """ELECTRA, generator + discriminator, each 6 * N + 12 * L * T * width:
  generator N = embedding projection E -> g (when E != g) + its L_g layers + its
  MLM head (dense g -> E, LayerNorm) + decoder bias + V * E (the decoder tied to
  the shared embeddings, over every position); discriminator N = projection
  E -> d (when E != d) + L layers + its head (dense d -> d, dense d -> 1). The
  shared embedding tables are not counted. Analytic, shared with the PyTorch
  peer (see bert.flops_per_token); `params` is unused."""
  del params
  m, t = config.model, config.data.seq_len
  e, v = m.embedding_size, m.vocab_size
  project = lambda width: (e * width + width) if e != width else 0
  g, d = m.generator_hidden_size, m.hidden_size
  generator = (project(g) + m.generator_num_hidden_layers * bert_family.layer_params(
      g, m.generator_intermediate_size) + (g * e + e + 2 * e) + v + v * e)
  discriminator = (project(d) + m.num_hidden_layers * bert_family.layer_params(
      d, m.intermediate_size) + (d * d + d) + (d + 1))
  return (bert_family.transformer_flops(generator, m.generator_num_hidden_layers, t, g)
          + bert_family.transformer_flops(discriminator, m.num_hidden_layers, t, d))


FAMILY = base.Family(
    name="electra", model=electra.ElectraForPreTraining, loss=losses.electra_pretraining,
    examples=encoder_examples.ReplacedTokenExamples, config_file="electra", check=check,
    progress_metrics=("loss", "mlm_accuracy", "disc_accuracy"),
    validate_overrides={**bert_family.SMALLER_ENCODER, "model.embedding_size": 48,
                        "model.generator_intermediate_size": 64},
    synthetic_batch=synthetic_batch, flops_per_token=flops_per_token)
