"""lm_jax: pre-train BERT-family encoders, GPT decoders and ELMo in JAX/Flax.

    import lm_jax
    model = lm_jax.load("runs/tiny")   # a training workdir, or an HF model directory
    model.fill_mask("She was the [MASK] of the two daughters.")
"""

__version__ = "0.1.0"

from lm_jax.inference import load  # pylint: disable=wrong-import-position  # noqa: E402
