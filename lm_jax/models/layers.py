"""Building blocks shared by the model families.

Every parameter carries `logical_axes` metadata (`vocab`, `embed`, `mlp`,
`heads`, `kv`, `layers`, ...). parallel.py maps those names to mesh axes; no
model file spells a PartitionSpec. Activations are constrained the same way
through `constrain` (parallel.py's), which is a no-op outside a mesh.

Parameters live in float32; each op casts them to the compute dtype.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from lm_jax.parallel import constrain  # pylint: disable=unused-import  # the models' import point

def param(rngs, init, shape, axes):
  """A float32 parameter annotated with its logical axes."""
  assert len(shape) == len(axes), (shape, axes)
  return nnx.Param(init(rngs.params(), shape, jnp.float32), logical_axes=tuple(axes))


def normal(stddev):
  return jax.nn.initializers.normal(stddev)


zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones


class Linear(nnx.Module):
  """y = x @ kernel + bias. `kernel` is [in, out] (HF stores [out, in])."""

  def __init__(self, din, dout, axes, *, init_std, rngs, use_bias=True):
    self.kernel = param(rngs, normal(init_std), (din, dout), axes)
    self.bias = param(rngs, zeros, (dout,), axes[-1:]) if use_bias else None

  def __call__(self, x):
    y = x @ self.kernel[...].astype(x.dtype)
    if self.bias is not None:
      y = y + self.bias[...].astype(x.dtype)
    return y


class LayerNorm(nnx.Module):
  """LayerNorm computed in float32 (as HF does under autocast), cast back."""

  def __init__(self, dim, *, eps, rngs, axis_name="embed"):
    self.scale = param(rngs, ones, (dim,), (axis_name,))
    self.bias = param(rngs, zeros, (dim,), (axis_name,))
    self.eps = eps

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class Embed(nnx.Module):
  """A lookup table [num, dim]; `attend` multiplies by its transpose (tied heads)."""

  def __init__(self, num, dim, axes, *, init_std, rngs):
    self.embedding = param(rngs, normal(init_std), (num, dim), axes)

  def __call__(self, ids, dtype):
    return jnp.take(self.embedding[...], ids, axis=0).astype(dtype)

  def attend(self, x):
    return x @ self.embedding[...].astype(x.dtype).T


def dropout(x, rate, key):
  """Inverted dropout; `key=None` (evaluation) or rate 0 is the identity."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def split_key(key, n):
  """n independent keys, or n Nones in evaluation."""
  return [None] * n if key is None else list(jax.random.split(key, n))


def attention(q, k, v, mask, *, implementation, kv_lengths=None):
  """Multi-head attention on [batch, length, heads, head_dim] tensors.

  `mask`: boolean [batch, 1, q_len, kv_len] (True = attend), or None.
  `implementation`: None (JAX picks), "xla", or "cudnn" (flash attention,
  bf16/fp16 only); cuDNN takes right-padding as `kv_lengths` [batch] instead
  of a dense mask.
  """
  if implementation == "cudnn" and kv_lengths is not None:
    return jax.nn.dot_product_attention(
        q, k, v, key_value_seq_lengths=kv_lengths, implementation="cudnn")
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


def attention_with_dropout(q, k, v, mask, rate, key):
  """Explicit softmax attention, for training with attention-prob dropout
  (which jax.nn.dot_product_attention does not offer)."""
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  scores = jnp.where(mask, scores.astype(jnp.float32), jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(scores, axis=-1).astype(q.dtype), rate, key)
  return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def stack_layers(make_layer, num_layers, rngs):
  """`num_layers` copies of a module with stacked parameters (for `scan`).

  Each parameter gains a leading `layers` axis, recorded in its logical axes.
  """
  keys = jax.random.split(rngs.params(), num_layers)

  @nnx.vmap(in_axes=0, out_axes=0)
  def make(key):
    return make_layer(nnx.Rngs(params=key))

  stacked = make(keys)
  for _, var in nnx.iter_graph(stacked):
    if isinstance(var, nnx.Variable):
      var.set_metadata("logical_axes", ("layers",) + var.get_metadata()["logical_axes"])
  return stacked


def scan_layers(stacked, h, keys, body, remat_policy, per_layer=None):
  """Runs `body(layer, h, key) -> h` over stacked layers with `lax.scan`.

  `per_layer` (arrays with a leading `layers` axis, e.g. a decoder's
  key/value cache) adds an input and an output per layer:
  `body(layer, h, key, x) -> (h, y)`, and the result is (h, stacked ys).
  """
  graphdef, state = nnx.split(stacked)

  def step(h, xs):
    layer_state, key, x = xs
    layer = nnx.merge(graphdef, layer_state)
    if per_layer is None:
      return body(layer, h, key), None
    return body(layer, h, key, x)

  step = remat(step, remat_policy)
  h, ys = jax.lax.scan(step, h, (state, keys, per_layer))
  return h if per_layer is None else (h, ys)


def remat(fn, policy):
  """Wraps `fn` in jax.checkpoint with a named policy ("none" = no remat)."""
  if policy == "none":
    return fn
  policies = {
      "full": None,  # save nothing, recompute everything
      "dots": jax.checkpoint_policies.checkpoint_dots,
      "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
  }
  return jax.checkpoint(fn, policy=policies[policy])


REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
