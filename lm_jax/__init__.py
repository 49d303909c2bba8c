"""lm_jax: pre-train BERT-family encoders, GPT decoders and ELMo in JAX/Flax.

    import lm_jax
    model = lm_jax.load("runs/tiny")   # a training workdir
    model.fill_mask("She was the [MASK] of the two daughters.")
"""

__version__ = "0.1.0"


def load(path, step=None):
  """A trained model and its tokenizer (see lm_jax.pretrained.Pretrained)."""
  from lm_jax import pretrained  # pylint: disable=g-import-not-at-top
  return pretrained.load(path, step)
