"""ELMo: character CNN + highway + projected biLSTM LMs, sampled softmax, bilm-tf HDF5."""
import numpy as np

from lm_jax import config as config_lib
from lm_jax.data import elmo_data, elmo_vocab
from lm_jax.families import base
from lm_jax.models import elmo
from lm_jax.objectives import losses


def check(c):
  """A biLSTM: no positions, heads or masking to check."""
  m, d = c.model, c.data
  n_filters = sum(n for _, n in m.filters)
  config_lib.check(d.seq_len >= 1, f"data.seq_len={d.seq_len} (the unroll length) must be positive.")
  config_lib.check(n_filters >= m.projection_dim,
             f"The char CNN has {n_filters} filters, fewer than model.projection_dim="
             f"{m.projection_dim}; bilm-tf projects down only, so add filters or lower it.")
  config_lib.check(m.max_characters_per_token >= max(w for w, _ in m.filters),
             f"model.max_characters_per_token={m.max_characters_per_token} is below the widest "
             "char filter; raise it.")
  config_lib.check(m.activation in ("relu", "tanh"),
             f"model.activation={m.activation!r} must be relu or tanh.")
  config_lib.check(m.projection_dim <= m.lstm_dim,
             f"model.projection_dim={m.projection_dim} is above model.lstm_dim={m.lstm_dim}; "
             "ELMo's LSTM output cannot be wider than its cells.")
  config_lib.check(m.n_negative_samples > 0,
             f"model.n_negative_samples={m.n_negative_samples} must be positive.")
  config_lib.check(m.vocab_size > 3,
             f"model.vocab_size={m.vocab_size} leaves no word besides <S>, </S>, <UNK>.")
  config_lib.check(m.dtype in config_lib.DTYPES,
             f"model.dtype={m.dtype!r} is not one of {config_lib.DTYPES}.")
  config_lib.check(not (d.stateful and c.train.grad_accum_steps > 1),
             "data.stateful carries the LSTM state from batch to batch, which gradient accumulation "
             "would break; set train.grad_accum_steps=1 or data.stateful=False.")
  config_lib.check(not c.init.from_hf,
             "ELMo cannot start from a HuggingFace model; leave init.from_hf empty.")


def synthetic_batch(config, rng):
  """An ELMo batch: forward and backward streams of random character ids and next words."""
  b, t, v = config.train.batch_size, config.data.seq_len, config.model.vocab_size
  chars = lambda: rng.integers(0, elmo.N_CHARACTERS, (b, t, config.model.max_characters_per_token),
                               dtype=np.int32)
  return dict(chars=chars(), chars_reverse=chars(),
              next_ids=rng.integers(0, v, (b, t), dtype=np.int32),
              next_ids_reverse=rng.integers(0, v, (b, t), dtype=np.int32))


def flops_per_token(config, params=None):
  """ELMo: 6 * 2 * the multiply-adds of one token in one direction (each LM, forward
  and backward, encodes its own stream, in lm_jax and in the peer alike; a
  multiply-add is 2 FLOPs forward and 4 backward). With P = projection_dim,
  D = lstm_dim, H = P if P < D else D (the recurrent input), C =
  max_characters_per_token, E = char_embedding_dim, F = the filters' total width
  and S = n_negative_samples, one direction counts
    char CNN     sum over filters (width w, n of them) of (C - w + 1) * w * E * n
    highway      n_highway * 2 * F * F   (transform and carry)
    projection   F * P when F != P
    LSTM layers  n_layers * (4 * D * (P + H) + D * P when P < D)   (the four gates
                 over input and recurrent state, then the projection)
    softmax      (S + 1) * P   (the sampled negatives and the true word)
  Biases, gate nonlinearities, clipping and the max over characters are not
  counted. Analytic, shared with the PyTorch peer (see bert.flops_per_token);
  `params` is unused."""
  del params
  m = config.model
  p, d, c, e = m.projection_dim, m.lstm_dim, m.max_characters_per_token, m.char_embedding_dim
  h = p if p < d else d
  f = sum(n for _, n in m.filters)
  cnn = sum((c - w + 1) * w * e * n for w, n in m.filters)
  encoder = cnn + m.n_highway * 2 * f * f + (f * p if f != p else 0)
  lstm = m.n_layers * (4 * d * (p + h) + (d * p if p < d else 0))
  softmax = (m.n_negative_samples + 1) * p
  return 6 * 2 * (encoder + lstm + softmax)


FAMILY = base.Family(
    name="elmo", model=elmo.ElmoBiLM, loss=losses.elmo_bilm, examples=elmo_data.ElmoExamples,
    config_file="elmo", inference="elmo", export_format="elmo", check=check,
    # Only the compute dtype: ELMo's dropout is part of the architecture for now
    # (a workdir trained with one dropout refuses another), as before the registry.
    runtime_keys=("dtype",),
    progress_metrics=("loss", "forward_perplexity", "backward_perplexity"),
    validate_overrides={
        "model.vocab_size": 2000, "model.max_characters_per_token": 20,
        "model.char_embedding_dim": 8, "model.filters": [[1, 8], [2, 8], [3, 16]],
        "model.projection_dim": 16, "model.lstm_dim": 48, "model.n_negative_samples": 256,
        "data.seq_len": 10, "train.learning_rate": 1e-2},
    vocab=elmo_vocab, initial_carry=elmo.initial_carry,
    synthetic_batch=synthetic_batch, flops_per_token=flops_per_token)
