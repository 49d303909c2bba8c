"""ELMo: a character-CNN token encoder and forward and backward LSTM language models.

The computation and the parameter layouts are bilm-tf's (see
shared/formats/bilm-elmo-hdf5.md), so export is a rename table plus reshapes:

- `token_encoder`: `char_embed` [261, E] indexed by raw character id; one
  convolution per filter (`cnn[i].kernel` [width, E, n]), max over positions,
  activation; highway layers `g * relu(x W_transform) + (1 - g) * x` with
  `g = sigmoid(x W_carry)`; a projection to P when the filters are not P wide.
- `forward_lstm[l]`, `backward_lstm[l]`: TF's projected LSTMCell. Gates i, j,
  f, o; the forget bias 1.0 is added at run time (not stored); cell and
  projection clipping; layers >= 1 add their input (residual). The input
  projections of all time steps are one matmul outside the `lax.scan`.
- `softmax`: W [vocab, P] and b, shared by both directions (training only).

`cfg` is the `model` section of the config (see configs/elmo.py).
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from lm_jax.models import layers
from lm_jax.models.layers import constrain, dropout

N_CHARACTERS = 261  # raw character ids; see data/elmo_vocab.py


def _uniform(limit):
  def init(key, shape, dtype):
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


class CharConv(nnx.Module):
  """One filter width: conv over characters + bias, max over positions, activation."""

  def __init__(self, width, char_dim, n_filters, activation, *, rngs):
    init = (_uniform(0.05) if activation == "relu"  # bilm-tf's initialisers
            else layers.normal(math.sqrt(1.0 / (width * char_dim))))
    self.kernel = layers.param(rngs, init, (width, char_dim, n_filters), (None, None, None))
    self.bias = layers.param(rngs, layers.zeros, (n_filters,), (None,))
    self.activation = activation

  def __call__(self, x):
    """[tokens, chars, E] -> [tokens, n_filters]."""
    y = jax.lax.conv_general_dilated(x, self.kernel[...].astype(x.dtype), (1,), "VALID",
                                     dimension_numbers=("NWC", "WIO", "NWC"))
    y = y.max(axis=1) + self.bias[...].astype(x.dtype)
    return jax.nn.relu(y) if self.activation == "relu" else jnp.tanh(y)


class Highway(nnx.Module):
  """x + g * (relu(x W_transform) - x), g = sigmoid(x W_carry) (bilm-tf's naming)."""

  def __init__(self, dim, *, rngs):
    std = math.sqrt(1.0 / dim)
    self.carry = layers.Linear(dim, dim, (None, None), init_std=std, rngs=rngs)
    self.carry.bias = layers.param(rngs, jax.nn.initializers.constant(-2.0), (dim,), (None,))
    self.transform = layers.Linear(dim, dim, (None, None), init_std=std, rngs=rngs)

  def __call__(self, x):
    gate = jax.nn.sigmoid(self.carry(x))
    return gate * jax.nn.relu(self.transform(x)) + (1 - gate) * x


class CharEncoder(nnx.Module):
  """Token embeddings [.., P] from character ids [.., max_characters_per_token]."""

  def __init__(self, cfg, *, rngs):
    e = cfg.char_embedding_dim
    self.char_embed = layers.param(rngs, _uniform(1.0), (N_CHARACTERS, e), (None, None))
    self.cnn = nnx.List([CharConv(w, e, n, cfg.activation, rngs=rngs) for w, n in cfg.filters])
    n_filters = sum(n for _, n in cfg.filters)
    self.highway = nnx.List([Highway(n_filters, rngs=rngs) for _ in range(cfg.n_highway)])
    self.projection = (layers.Linear(n_filters, cfg.projection_dim, (None, "embed"),
                                     init_std=math.sqrt(1.0 / n_filters), rngs=rngs)
                       if n_filters != cfg.projection_dim else None)

  def __call__(self, chars, dtype):
    lead = chars.shape[:-1]
    x = jnp.take(self.char_embed[...], chars.reshape(-1, chars.shape[-1]), axis=0).astype(dtype)
    x = jnp.concatenate([conv(x) for conv in self.cnn], axis=-1)
    for layer in self.highway:
      x = layer(x)
    if self.projection is not None:
      x = self.projection(x)
    return x.reshape(*lead, -1)


class LSTMLayer(nnx.Module):
  """TF 1.x LSTMCell(num_proj, cell_clip, proj_clip), run over time with `lax.scan`.

  Kernels are stored [in, gate, cell] so the cells (`lstm_hidden`) can be
  sharded without splitting a gate from its partners.
  """

  def __init__(self, cfg, *, rngs):
    p, d = cfg.projection_dim, cfg.lstm_dim
    self.has_projection = p < d
    h = p if self.has_projection else d
    limit = math.sqrt(6.0 / (p + h + 4 * d))  # glorot uniform of TF's [p + h, 4d] kernel
    self.input_kernel = layers.param(rngs, _uniform(limit), (p, 4, d), ("embed", None, "lstm_hidden"))
    self.recurrent_kernel = layers.param(rngs, _uniform(limit), (h, 4, d),
                                         ("embed", None, "lstm_hidden"))
    self.bias = layers.param(rngs, layers.zeros, (4, d), (None, "lstm_hidden"))
    if self.has_projection:
      self.projection = layers.param(rngs, _uniform(math.sqrt(6.0 / (d + p))), (d, p),
                                     ("lstm_hidden", "embed"))
    self.cell_clip, self.proj_clip = cfg.cell_clip, cfg.proj_clip

  def __call__(self, x, state):
    """x [batch, time, P], state (c [batch, D], h [batch, H]) -> (h of every step, last state)."""
    dtype = x.dtype
    gates_x = (jnp.einsum("btp,pgd->tbgd", x, self.input_kernel[...].astype(dtype))
               + self.bias[...].astype(dtype)).astype(jnp.float32)
    recurrent = self.recurrent_kernel[...].astype(dtype)
    projection = self.projection[...].astype(dtype) if self.has_projection else None

    def step(carry, gx):
      c, h = carry
      z = gx + jnp.einsum("bh,hgd->bgd", h.astype(dtype), recurrent).astype(jnp.float32)
      i, j, f, o = z[:, 0], z[:, 1], z[:, 2], z[:, 3]
      c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
      if self.cell_clip is not None:
        c = jnp.clip(c, -self.cell_clip, self.cell_clip)
      h = jax.nn.sigmoid(o) * jnp.tanh(c)
      if projection is not None:
        h = (h.astype(dtype) @ projection).astype(jnp.float32)
        if self.proj_clip is not None:
          h = jnp.clip(h, -self.proj_clip, self.proj_clip)
      return (c, h), h

    state, hs = jax.lax.scan(step, state, gates_x)
    return hs.swapaxes(0, 1).astype(dtype), state


class Softmax(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.W = layers.param(rngs, layers.normal(1.0 / math.sqrt(cfg.projection_dim)),
                          (cfg.vocab_size, cfg.projection_dim), ("vocab", "embed"))
    self.b = layers.param(rngs, layers.zeros, (cfg.vocab_size,), ("vocab",))

  def logits(self, x):
    return x.astype(jnp.float32) @ self.W[...].T + self.b[...]


def zero_state(batch_size, projection_dim, lstm_dim, n_layers):
  """The LSTMs' initial state: {forward, backward: [{c, h} per layer]}, float32 zeros."""
  layer = lambda: dict(c=jnp.zeros((batch_size, lstm_dim), jnp.float32),
                       h=jnp.zeros((batch_size, min(projection_dim, lstm_dim)), jnp.float32))
  return {d: [layer() for _ in range(n_layers)] for d in ("forward", "backward")}


def initial_carry(config, batch_size):
  """The train loop's recurrent carry: zero states when `data.stateful`, else None."""
  m = config.model
  return (zero_state(batch_size, m.projection_dim, m.lstm_dim, m.n_layers)
          if config.data.stateful else None)


class ElmoBiLM(nnx.Module):
  """Token encoder, forward and backward LSTM LMs, shared softmax."""

  def __init__(self, cfg, *, rngs):
    self.token_encoder = CharEncoder(cfg, rngs=rngs)
    self.forward_lstm = nnx.List([LSTMLayer(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.backward_lstm = nnx.List([LSTMLayer(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.softmax = Softmax(cfg, rngs=rngs)
    self.sizes = (cfg.projection_dim, cfg.lstm_dim, cfg.n_layers)  # for zero_state
    self.rate, self.residual = cfg.dropout, cfg.use_skip_connections
    self.num_sampled = cfg.n_negative_samples
    self.dtype = jnp.dtype(cfg.dtype)

  def _run(self, lstm, x, state, key):
    """One direction over its stream: outputs of every layer, and the last states.

    With a dropout `key` (training) the inputs of every layer and the top
    output are dropped, as bilm-tf does."""
    outputs, new_state = [], []
    *keys, k_out = layers.split_key(key, len(lstm) + 1)
    for l, (layer, k) in enumerate(zip(lstm, keys)):
      inputs = dropout(x, self.rate, k)  # bilm-tf: DropoutWrapper(input_keep_prob)
      h, (c, hh) = layer(inputs, (state[l]["c"], state[l]["h"]))
      x = h + inputs if (self.residual and l >= 1) else h
      x = constrain(x, ("batch", "length", "act_embed"))
      outputs.append(x)
      new_state.append(dict(c=c, h=hh))
    outputs[-1] = dropout(outputs[-1], self.rate, k_out)  # bilm-tf drops the softmax input too
    return outputs, new_state

  def __call__(self, chars, chars_reverse, state=None, key=None):
    """Both LMs over their streams [batch, time, max_chars] (each read left to right).

    Returns dict(token [b, t, P] and token_reverse (the encoder's outputs),
    forward and backward (lists of per-layer outputs [b, t, P]), state).
    """
    if state is None:
      state = zero_state(chars.shape[0], *self.sizes)
    k_fwd, k_bwd = layers.split_key(key, 2)
    token = constrain(self.token_encoder(chars, self.dtype), ("batch", "length", "act_embed"))
    token_reverse = constrain(self.token_encoder(chars_reverse, self.dtype),
                              ("batch", "length", "act_embed"))
    forward, fwd_state = self._run(self.forward_lstm, token, state["forward"], k_fwd)
    backward, bwd_state = self._run(self.backward_lstm, token_reverse, state["backward"], k_bwd)
    return dict(token=token, token_reverse=token_reverse, forward=forward, backward=backward,
                state=dict(forward=fwd_state, backward=bwd_state))

  def embed_layers(self, chars, lengths):
    """ELMo's layers [batch, n_layers + 1, time, 2P] of padded sentences from zero states.

    `chars` [batch, time, max_chars] holds `<S> w1 .. wn </S>` per row,
    `lengths` [batch] their lengths; the backward LM reads each row reversed
    within its length (as tf.reverse_sequence). Padding positions are zeros.
    """
    t = jnp.arange(chars.shape[1])[None, :]
    valid = t < lengths[:, None]
    reverse = jnp.where(valid, lengths[:, None] - 1 - t, t)  # an involution
    flip = lambda x: jnp.take_along_axis(x, reverse.reshape(*reverse.shape, *[1] * (x.ndim - 2)),
                                         axis=1)
    out = self(chars, flip(chars))
    layers_out = [jnp.concatenate([out["token"], out["token"]], -1)]
    for fwd, bwd in zip(out["forward"], out["backward"]):
      layers_out.append(jnp.concatenate([fwd, flip(bwd)], -1))
    stacked = jnp.stack(layers_out, axis=1).astype(jnp.float32)
    return jnp.where(valid[:, None, :, None], stacked, 0.0)


def scalar_mix(layers, weights, gamma=1.0):
  """AllenNLP's ScalarMix (no layer norm): gamma * sum_k softmax(weights)_k layers[:, k].

  layers [batch, K, ...], weights [K]; differentiable, so the weights can be
  learnt with a downstream task.
  """
  w = jax.nn.softmax(jnp.asarray(weights, jnp.float32))
  return gamma * jnp.einsum("k,bk...->b...", w, jnp.asarray(layers, jnp.float32))
