"""GPT-2: a Transformer decoder, causal LM on packed documents."""
import numpy as np

from lm_jax.data import causal
from lm_jax.families import base, bert as bert_family
from lm_jax.models import gpt
from lm_jax.objectives import losses


def synthetic_batch(config, rng):
  """A GPT-2 batch: full windows of one document each, random content."""
  b, t, v = config.train.batch_size, config.data.seq_len, config.model.vocab_size
  tokens = rng.integers(0, v, (b, t + 1), dtype=np.int32)
  return dict(input_ids=tokens[:, :-1], labels=tokens[:, 1:],
              segment_ids=np.ones((b, t), np.int32), weights=np.ones((b, t), np.float32))


def flops_per_token(config, params=None):
  """GPT-2: 6 * N_non-embedding + 6 * V * d + 12 * L * T * d, where N_non-embedding
  = L blocks (two LayerNorms, QKV and output projections, the MLP) + the final
  LayerNorm, 6 * V * d the LM head tied to the token embeddings over every
  position, and 12 * L * T * d the whole T x T score matrix (dense attention
  computes it all; a causal kernel that skips the masked half does half that).
  Analytic, shared with the PyTorch peer (see bert.flops_per_token); `params`
  is unused."""
  del params
  m = config.model
  d, ff = m.n_embd, gpt.inner_size(m)
  block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d)
  n = m.n_layer * block + 2 * d
  return bert_family.transformer_flops(n + m.vocab_size * d, m.n_layer, config.data.seq_len, d)


FAMILY = base.Family(
    name="gpt2", model=gpt.GPT2LMHeadModel, loss=losses.causal_lm,
    examples=causal.CausalExamples, config_file="gpt2", inference="causal_lm",
    check=base.check_transformer, runtime_keys=("dtype", "attention", "remat", "resid_pdrop",
                                                "embd_pdrop", "attn_pdrop"),
    progress_metrics=("loss", "perplexity", "accuracy"),
    validate_overrides={"model.n_embd": 64, "model.n_positions": 64, "data.seq_len": 64},
    synthetic_batch=synthetic_batch, flops_per_token=flops_per_token)
