"""BERT encoder with the MLM and NSP pre-training heads.

Submodule and parameter names mirror HF's `BertForPreTraining`
(`bert.encoder.layer.{i}.attention.self.query`, `cls.predictions.bias`, ...),
so export is a rename table plus transposes. With `scan_layers=True`,
`bert.encoder.layer` holds all layers stacked on a leading `layers` axis.

`cfg` is the `model` section of the config (see configs/bert_base.py).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from lm_jax.models import layers
from lm_jax.models.layers import LayerNorm, Linear, constrain, dropout


def gelu(x):
  return jax.nn.gelu(x, approximate=False)  # HF "gelu" is the exact erf form


def attention_masks(attention_mask):
  """(boolean mask [b, 1, 1, t], kv lengths [b]) from a [b, t] 0/1 padding mask."""
  attention_mask = attention_mask.astype(bool)
  return attention_mask[:, None, None, :], attention_mask.sum(-1).astype(jnp.int32)


def gather_positions(hidden, positions):
  """hidden [b, t, h] at `positions` [b, p] (all of it when positions is None)."""
  if positions is None:
    return hidden
  return jnp.take_along_axis(hidden, positions[..., None], axis=1)


class BertEmbeddings(nnx.Module):
  """Word + position + token-type embeddings of size `dim` (default hidden_size;
  ALBERT and ELECTRA use a smaller embedding_size)."""

  def __init__(self, cfg, *, rngs, dim=None):
    std, h = cfg.initializer_range, dim or cfg.hidden_size
    self.word_embeddings = layers.Embed(cfg.vocab_size, h, ("vocab", "embed"), init_std=std, rngs=rngs)
    self.position_embeddings = layers.Embed(cfg.max_position_embeddings, h, (None, "embed"), init_std=std, rngs=rngs)
    self.token_type_embeddings = layers.Embed(cfg.type_vocab_size, h, (None, "embed"), init_std=std, rngs=rngs)
    self.LayerNorm = LayerNorm(h, eps=cfg.layer_norm_eps, rngs=rngs)
    self.rate = cfg.hidden_dropout_prob

  def __call__(self, input_ids, token_type_ids, dtype, key, positions=None):
    """`positions` [b, t] default to 0, 1, ... (RoBERTa passes its own)."""
    if positions is None:
      positions = jnp.arange(input_ids.shape[1])[None, :]
    x = (self.word_embeddings(input_ids, dtype) + self.position_embeddings(positions, dtype)
         + self.token_type_embeddings(token_type_ids, dtype))
    x = constrain(x, ("batch", "length", "act_embed"))
    return dropout(self.LayerNorm(x), self.rate, key)


class BertSelfAttention(nnx.Module):

  def __init__(self, cfg, *, rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.query = Linear(h, h, ("embed", "heads"), init_std=std, rngs=rngs)
    self.key = Linear(h, h, ("embed", "heads"), init_std=std, rngs=rngs)
    self.value = Linear(h, h, ("embed", "heads"), init_std=std, rngs=rngs)
    self.num_heads = cfg.num_attention_heads
    self.rate = cfg.attention_probs_dropout_prob
    self.implementation = None if cfg.attention == "auto" else cfg.attention

  def __call__(self, x, mask, kv_lengths, key):
    b, t, _ = x.shape
    split = lambda y: constrain(y.reshape(b, t, self.num_heads, -1), ("batch", "length", "heads", "kv"))
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    if key is not None and self.rate > 0:
      out = layers.attention_with_dropout(q, k, v, mask, self.rate, key)
    else:
      out = layers.attention(q, k, v, mask, implementation=self.implementation, kv_lengths=kv_lengths)
    return out.reshape(b, t, -1)


class BertSelfOutput(nnx.Module):
  """Projection + dropout + residual + LayerNorm (HF: attention.output / output)."""

  def __init__(self, din, cfg, axes, *, rngs):
    self.dense = Linear(din, cfg.hidden_size, axes, init_std=cfg.initializer_range, rngs=rngs)
    self.LayerNorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, rngs=rngs)
    self.rate = cfg.hidden_dropout_prob

  def __call__(self, x, residual, key):
    return self.LayerNorm(dropout(self.dense(x), self.rate, key) + residual)


class BertAttention(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.self = BertSelfAttention(cfg, rngs=rngs)
    self.output = BertSelfOutput(cfg.hidden_size, cfg, ("heads", "embed"), rngs=rngs)

  def __call__(self, x, mask, kv_lengths, key):
    k1, k2 = layers.split_key(key, 2)
    return self.output(self.self(x, mask, kv_lengths, k1), x, k2)


class BertIntermediate(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.dense = Linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"),
                        init_std=cfg.initializer_range, rngs=rngs)

  def __call__(self, x):
    return constrain(gelu(self.dense(x)), ("batch", "length", "mlp"))


class BertLayer(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.attention = BertAttention(cfg, rngs=rngs)
    self.intermediate = BertIntermediate(cfg, rngs=rngs)
    self.output = BertSelfOutput(cfg.intermediate_size, cfg, ("mlp", "embed"), rngs=rngs)

  def __call__(self, x, mask, kv_lengths, key):
    k1, k2 = layers.split_key(key, 2)
    x = self.attention(x, mask, kv_lengths, k1)
    x = self.output(self.intermediate(x), x, k2)
    return constrain(x, ("batch", "length", "act_embed"))


class BertEncoder(nnx.Module):

  def __init__(self, cfg, *, rngs):
    make = lambda r: BertLayer(cfg, rngs=r)
    self.scan = cfg.scan_layers
    self.remat_policy = cfg.remat
    self.num_layers = cfg.num_hidden_layers
    if self.scan:
      self.layer = layers.stack_layers(make, cfg.num_hidden_layers, rngs)
    else:
      self.layer = nnx.List([make(rngs) for _ in range(cfg.num_hidden_layers)])

  def __call__(self, x, mask, kv_lengths, key):
    body = lambda layer, h, k: layer(h, mask, kv_lengths, k)
    if self.scan:
      keys = None if key is None else jax.random.split(key, self.num_layers)
      return layers.scan_layers(self.layer, x, keys, body, self.remat_policy)
    body = layers.remat(body, self.remat_policy)
    for layer, k in zip(self.layer, layers.split_key(key, self.num_layers)):
      x = body(layer, x, k)
    return x


class BertPooler(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.dense = Linear(cfg.hidden_size, cfg.hidden_size, ("embed", None),
                        init_std=cfg.initializer_range, rngs=rngs)

  def __call__(self, x):
    return jnp.tanh(self.dense(x[:, 0]))


class BertModel(nnx.Module):

  def __init__(self, cfg, *, rngs, add_pooling_layer=True):
    self.embeddings = BertEmbeddings(cfg, rngs=rngs)
    self.encoder = BertEncoder(cfg, rngs=rngs)
    self.pooler = BertPooler(cfg, rngs=rngs) if add_pooling_layer else None
    self.dtype = jnp.dtype(cfg.dtype)

  def __call__(self, input_ids, token_type_ids, attention_mask, key=None, positions=None):
    """Returns (sequence output [b, t, h], pooled output [b, h] or None)."""
    k1, k2 = layers.split_key(key, 2)
    mask, kv_lengths = attention_masks(attention_mask)
    x = self.embeddings(input_ids, token_type_ids, self.dtype, k1, positions)
    x = self.encoder(x, mask, kv_lengths, k2)
    return x, None if self.pooler is None else self.pooler(x)


class BertPredictionHeadTransform(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.dense = Linear(cfg.hidden_size, cfg.hidden_size, ("embed", None),
                        init_std=cfg.initializer_range, rngs=rngs)
    self.LayerNorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, x):
    return self.LayerNorm(gelu(self.dense(x)))


class BertLMPredictionHead(nnx.Module):
  """Transform, then the decoder tied to the word embeddings, plus a bias."""

  def __init__(self, cfg, *, rngs):
    self.transform = BertPredictionHeadTransform(cfg, rngs=rngs)
    self.bias = layers.param(rngs, layers.zeros, (cfg.vocab_size,), ("vocab",))

  def __call__(self, x, word_embeddings):
    logits = word_embeddings.attend(self.transform(x)) + self.bias[...].astype(x.dtype)
    return logits.astype(jnp.float32)


class BertPreTrainingHeads(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.predictions = BertLMPredictionHead(cfg, rngs=rngs)
    self.seq_relationship = Linear(cfg.hidden_size, 2, ("embed", None),
                                   init_std=cfg.initializer_range, rngs=rngs)


class BertForPreTraining(nnx.Module):
  """Encoder + MLM head (tied) + next-sentence head."""

  def __init__(self, cfg, *, rngs):
    self.bert = BertModel(cfg, rngs=rngs)
    self.cls = BertPreTrainingHeads(cfg, rngs=rngs)

  def __call__(self, input_ids, token_type_ids, attention_mask, *,
               masked_positions=None, key=None):
    """Returns dict(mlm_logits, nsp_logits, hidden_states).

    With `masked_positions` [b, p] the MLM head runs only at those positions
    (training: ~15% of the tokens) and `mlm_logits` is [b, p, vocab];
    otherwise it is [b, t, vocab].
    """
    hidden, pooled = self.bert(input_ids, token_type_ids, attention_mask, key)
    x = gather_positions(hidden, masked_positions)
    mlm_logits = self.cls.predictions(x, self.bert.embeddings.word_embeddings)
    nsp_logits = self.cls.seq_relationship(pooled).astype(jnp.float32)
    return dict(mlm_logits=mlm_logits, nsp_logits=nsp_logits, hidden_states=hidden)
