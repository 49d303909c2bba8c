"""Flax NNX models: pure functions of their parameters and a batch.

Which module a `model.family` uses is in its record in lm_jax/families/.
"""
