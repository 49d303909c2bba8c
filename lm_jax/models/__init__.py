"""Flax NNX models: pure functions of their parameters and a batch."""
from lm_jax.models import bert

# model.family -> the pre-training model class.
FAMILIES = {"bert": bert.BertForPreTraining}


def build(cfg, *, rngs):
  """The model named by `cfg.family`, built from the `model` config section."""
  return FAMILIES[cfg.family](cfg, rngs=rngs)
