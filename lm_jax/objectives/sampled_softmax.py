"""Sampled softmax with log-uniform (Zipfian) negatives, as bilm-tf trains ELMo.

TF's `sampled_softmax_loss` with its default sampler: `num_sampled` distinct
classes drawn from P(c) = log((c + 2) / (c + 1)) / log(V + 1) (ids sorted by
frequency), shared by the whole batch; every logit is corrected by
subtracting log(expected count of its class), and a sampled class equal to a
row's true class is removed from that row ("accidental hit"). The full
softmax is the exact cross-entropy, for evaluation.

Distinct samples come from Gumbel top-k (the same distribution as TF's draw-
until-distinct). TF's expected count 1 - (1 - P(c))^n uses the number n of
draws it took; here n is the number of draws whose expected distinct count is
`num_sampled`, computed once.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np


def log_uniform_log_probs(vocab_size):
  c = np.arange(vocab_size, dtype=np.float64)
  return np.log(np.log1p(1.0 / (c + 1.0)) / np.log(vocab_size + 1.0))


@functools.lru_cache(maxsize=8)
def expected_draws(vocab_size, num_sampled):
  """Draws n with sum_c 1 - (1 - P(c))^n = num_sampled (bisection, float64)."""
  p = np.exp(log_uniform_log_probs(vocab_size))
  distinct = lambda n: float(-np.expm1(n * np.log1p(-p)).sum())
  lo, hi = float(num_sampled), float(num_sampled)
  while distinct(hi) < num_sampled:
    hi *= 2
  for _ in range(100):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if distinct(mid) < num_sampled else (lo, mid)
  return (lo + hi) / 2


def log_expected_counts(vocab_size, num_sampled):
  """float32 [V]: log of each class's expected count in a distinct sample."""
  n = expected_draws(vocab_size, num_sampled)
  p = np.exp(log_uniform_log_probs(vocab_size))
  return np.log(-np.expm1(n * np.log1p(-p))).astype(np.float32)


def sample_classes(key, vocab_size, num_sampled):
  """int32 [num_sampled]: distinct log-uniform classes (Gumbel top-k)."""
  scores = jnp.asarray(log_uniform_log_probs(vocab_size), jnp.float32) + jax.random.gumbel(
      key, (vocab_size,))
  return jax.lax.top_k(scores, num_sampled)[1]


def sampled_cross_entropy(x, labels, weight, bias, key, num_sampled):
  """Per-row sampled-softmax loss: x [N, P], labels [N], weight [V, P], bias [V]."""
  vocab_size = weight.shape[0]
  if num_sampled >= vocab_size - 1:  # every class is a negative: the exact loss
    return full_cross_entropy(x, labels, weight, bias)
  sampled = sample_classes(key, vocab_size, num_sampled)
  log_q = jnp.asarray(log_expected_counts(vocab_size, num_sampled))
  x = x.astype(jnp.float32)
  true_logit = (jnp.einsum("np,np->n", x, weight[labels]) + bias[labels] - log_q[labels])
  sampled_logits = x @ weight[sampled].T + bias[sampled] - log_q[sampled]
  sampled_logits = jnp.where(sampled[None, :] == labels[:, None], -1e30, sampled_logits)
  logits = jnp.concatenate([true_logit[:, None], sampled_logits], axis=1)
  return jax.nn.logsumexp(logits, axis=1) - true_logit


def full_cross_entropy(x, labels, weight, bias):
  """Per-row exact softmax cross-entropy over all V classes."""
  logits = x.astype(jnp.float32) @ weight.T + bias
  return jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, labels[:, None], 1)[:, 0]
