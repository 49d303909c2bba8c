"""ELMo: character CNN + highway + projected biLSTM LMs, sampled softmax, bilm-tf HDF5."""
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
    vocab=elmo_vocab, initial_carry=elmo.initial_carry)
