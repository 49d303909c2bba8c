"""GPT-2: a causal Transformer decoder with a language-model head.

Names mirror HF's `GPT2LMHeadModel` (`transformer.h.{i}.attn.c_attn`,
`transformer.ln_f`, ...); the LM head is tied to `transformer.wte`. HF's
Conv1D weights are already [in, out], like our Linear kernels, so export
is a pure rename. With `scan_layers=True`, `transformer.h` holds all layers
stacked on a leading `layers` axis.

Packed sequences: `segment_ids` [b, t] number the documents of a row (0 =
padding). A token attends only to earlier tokens of its own segment, and
positions restart at 0 in every segment, so each packed document is
computed exactly as HF computes it alone (unpacked, position ids 0..n-1).

Decoding: `init_cache` gives a key/value cache of `max_len` slots; each
call with `cache=` writes its tokens at `cache["index"]` and attends over
every filled slot of the same segment.

`cfg` is the `model` section of the config (see configs/gpt2.py).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from lm_jax.models import layers
from lm_jax.models.layers import LayerNorm, Linear, constrain, dropout


def gelu_new(x):
  return jax.nn.gelu(x, approximate=True)  # HF "gelu_new" is the tanh approximation


def inner_size(cfg):
  return 4 * cfg.n_embd if cfg.n_inner in (-1, None) else cfg.n_inner


def positions_in_segments(segment_ids):
  """Each token's offset from the start of its segment: [b, t] int32."""
  t = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)
  starts = jnp.concatenate([jnp.ones_like(segment_ids[:, :1], bool),
                            segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)
  return t - jax.lax.cummax(jnp.where(starts, t, 0), axis=1)


def causal_segment_mask(q_slots, q_segments, kv_slots, kv_segments):
  """[b, 1, q, kv] boolean: attend to keys at or before the query, in its segment."""
  causal = kv_slots[None, None, :] <= q_slots[None, :, None]
  same = q_segments[:, :, None] == kv_segments[:, None, :]
  return (causal & same)[:, None]


class GPT2Attention(nnx.Module):

  def __init__(self, cfg, *, rngs):
    h, std = cfg.n_embd, cfg.initializer_range
    self.c_attn = Linear(h, 3 * h, ("embed", "heads"), init_std=std, rngs=rngs)
    self.c_proj = Linear(h, h, ("heads", "embed"), init_std=std, rngs=rngs)
    self.num_heads = cfg.n_head
    self.attn_rate, self.resid_rate = cfg.attn_pdrop, cfg.resid_pdrop
    self.implementation = None if cfg.attention == "auto" else cfg.attention

  def __call__(self, x, mask, key, cache=None):
    """`cache` (k, v [b, max_len, heads, head_dim], index) -> also returns the new (k, v)."""
    b, t, _ = x.shape
    k1, k2 = layers.split_key(key, 2)
    split = lambda y: constrain(y.reshape(b, t, self.num_heads, -1), ("batch", "length", "heads", "kv"))
    q, k, v = (split(y) for y in jnp.split(self.c_attn(x), 3, axis=-1))
    if cache is not None:
      cache_k, cache_v, index = cache
      k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), (0, index, 0, 0))
      v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), (0, index, 0, 0))
    if k1 is not None and self.attn_rate > 0:
      out = layers.attention_with_dropout(q, k, v, mask, self.attn_rate, k1)
    else:
      out = layers.attention(q, k.astype(q.dtype), v.astype(q.dtype), mask,
                             implementation=self.implementation)
    out = dropout(self.c_proj(out.reshape(b, t, -1)), self.resid_rate, k2)
    return out if cache is None else (out, (k, v))


class GPT2MLP(nnx.Module):

  def __init__(self, cfg, *, rngs):
    h, std = cfg.n_embd, cfg.initializer_range
    self.c_fc = Linear(h, inner_size(cfg), ("embed", "mlp"), init_std=std, rngs=rngs)
    self.c_proj = Linear(inner_size(cfg), h, ("mlp", "embed"), init_std=std, rngs=rngs)
    self.rate = cfg.resid_pdrop

  def __call__(self, x, key):
    y = constrain(gelu_new(self.c_fc(x)), ("batch", "length", "mlp"))
    return dropout(self.c_proj(y), self.rate, key)


class GPT2Block(nnx.Module):
  """Pre-LayerNorm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

  def __init__(self, cfg, *, rngs):
    self.ln_1 = LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, rngs=rngs)
    self.attn = GPT2Attention(cfg, rngs=rngs)
    self.ln_2 = LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, rngs=rngs)
    self.mlp = GPT2MLP(cfg, rngs=rngs)

  def __call__(self, x, mask, key, cache=None):
    k1, k2 = layers.split_key(key, 2)
    attn = self.attn(self.ln_1(x), mask, k1, cache)
    attn, new_cache = attn if cache is not None else (attn, None)
    x = x + attn
    x = constrain(x + self.mlp(self.ln_2(x), k2), ("batch", "length", "act_embed"))
    return x if cache is None else (x, new_cache)


class GPT2Model(nnx.Module):

  def __init__(self, cfg, *, rngs):
    std, h = cfg.initializer_range, cfg.n_embd
    self.wte = layers.Embed(cfg.vocab_size, h, ("vocab", "embed"), init_std=std, rngs=rngs)
    self.wpe = layers.Embed(cfg.n_positions, h, (None, "embed"), init_std=std, rngs=rngs)
    make = lambda r: GPT2Block(cfg, rngs=r)
    self.scan, self.remat_policy, self.num_layers = cfg.scan_layers, cfg.remat, cfg.n_layer
    if self.scan:
      self.h = layers.stack_layers(make, cfg.n_layer, rngs)
    else:
      self.h = nnx.List([make(rngs) for _ in range(cfg.n_layer)])
    self.ln_f = LayerNorm(h, eps=cfg.layer_norm_epsilon, rngs=rngs)
    self.rate = cfg.embd_pdrop
    self.dtype = jnp.dtype(cfg.dtype)

  def __call__(self, input_ids, positions, mask, key=None, cache=None):
    """Hidden states [b, t, h]; with `cache` (k, v [layers, ...], index), also the new (k, v)."""
    k_embed, k_layers = layers.split_key(key, 2)
    x = self.wte(input_ids, self.dtype) + self.wpe(positions, self.dtype)
    x = dropout(constrain(x, ("batch", "length", "act_embed")), self.rate, k_embed)
    keys = layers.split_key(k_layers, self.num_layers)
    if cache is None:
      body = lambda layer, h, k: layer(h, mask, k)
      if self.scan:
        keys = None if key is None else jnp.stack(keys)
        x = layers.scan_layers(self.h, x, keys, body, self.remat_policy)
      else:
        body = layers.remat(body, self.remat_policy)
        for layer, k in zip(self.h, keys):
          x = body(layer, x, k)
      return self.ln_f(x)
    cache_k, cache_v, index = cache
    body = lambda layer, h, k, kv: layer(h, mask, k, (*kv, index))
    if self.scan:
      x, (new_k, new_v) = layers.scan_layers(self.h, x, None, body, "none", (cache_k, cache_v))
    else:
      news = []
      for i, layer in enumerate(self.h):
        x, kv = body(layer, x, None, (cache_k[i], cache_v[i]))
        news.append(kv)
      new_k, new_v = (jnp.stack(t) for t in zip(*news))
    return self.ln_f(x), (new_k, new_v)


class GPT2LMHeadModel(nnx.Module):
  """The decoder with its LM head tied to the token embeddings."""

  def __init__(self, cfg, *, rngs):
    self.transformer = GPT2Model(cfg, rngs=rngs)
    self.cache_shape = (cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head)
    self.dtype = jnp.dtype(cfg.dtype)

  def __call__(self, input_ids, segment_ids=None, positions=None, *, key=None, cache=None):
    """Returns dict(logits [b, t, vocab] float32, hidden_states[, cache]).

    `segment_ids` [b, t]: documents of a packed row (default: one per row).
    `positions` default to the offsets within each segment. With `cache`
    (from `init_cache`), the tokens are written at its index and attend to
    the earlier slots too; the result holds the updated cache.
    """
    if segment_ids is None:
      segment_ids = jnp.ones_like(input_ids)
    if positions is None:
      positions = positions_in_segments(segment_ids)
    t = input_ids.shape[1]
    if cache is None:
      slots = jnp.arange(t)
      mask = causal_segment_mask(slots, segment_ids, slots, segment_ids)
      hidden = self.transformer(input_ids, positions, mask, key)
    else:
      index = cache["index"]
      kv_segments = jax.lax.dynamic_update_slice(cache["segment_ids"], segment_ids, (0, index))
      mask = causal_segment_mask(index + jnp.arange(t), segment_ids,
                                 jnp.arange(kv_segments.shape[1]), kv_segments)
      hidden, (k, v) = self.transformer(input_ids, positions, mask, key,
                                        (cache["k"], cache["v"], index))
      cache = dict(k=k, v=v, segment_ids=kv_segments, index=index + t)
    logits = self.transformer.wte.attend(hidden).astype(jnp.float32)
    out = dict(logits=logits, hidden_states=hidden)
    return out if cache is None else dict(out, cache=cache)

  def init_cache(self, batch_size, max_len):
    """An empty key/value cache: its slots belong to segment -1 (no query's)."""
    num_layers, heads, head_dim = self.cache_shape
    shape = (num_layers, batch_size, max_len, heads, head_dim)
    return dict(k=jnp.zeros(shape, self.dtype), v=jnp.zeros(shape, self.dtype),
                segment_ids=jnp.full((batch_size, max_len), -1, jnp.int32),
                index=jnp.int32(0))
