"""ALBERT: factorised embeddings, one layer shared by all depths, MLM + SOP heads.

Names mirror HF's `AlbertForPreTraining` (`albert.encoder.albert_layer_groups.0.
albert_layers.0.attention.query`, `predictions.dense`, `sop_classifier.classifier`).
Embeddings have size `embedding_size` (E) and `embedding_hidden_mapping_in`
projects them to `hidden_size` (H); the single layer (one group of one layer,
HF's num_hidden_groups = inner_group_num = 1) runs `num_hidden_layers` times,
so the parameter count does not grow with depth. With `scan_layers` the
repeats run under `lax.scan` (faster compile); the parameters are the same.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from lm_jax.models import bert, layers
from lm_jax.models.layers import LayerNorm, Linear, constrain, dropout

# HF activation names: "gelu" is the exact erf form, "gelu_new" the tanh one (ALBERT's default).
ACTIVATIONS = {"gelu": bert.gelu, "gelu_new": lambda x: jax.nn.gelu(x, approximate=True)}


class AlbertAttention(bert.BertSelfAttention):
  """BERT's self-attention with the output projection, dropout, residual and
  LayerNorm in the same module (HF: attention.dense, attention.LayerNorm)."""

  def __init__(self, cfg, *, rngs):
    super().__init__(cfg, rngs=rngs)
    h = cfg.hidden_size
    self.dense = Linear(h, h, ("heads", "embed"), init_std=cfg.initializer_range, rngs=rngs)
    self.LayerNorm = LayerNorm(h, eps=cfg.layer_norm_eps, rngs=rngs)
    self.output_rate = cfg.hidden_dropout_prob

  def __call__(self, x, mask, kv_lengths, key):
    k1, k2 = layers.split_key(key, 2)
    context = super().__call__(x, mask, kv_lengths, k1)
    return self.LayerNorm(x + dropout(self.dense(context), self.output_rate, k2))


class AlbertLayer(nnx.Module):

  def __init__(self, cfg, *, rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.attention = AlbertAttention(cfg, rngs=rngs)
    self.ffn = Linear(h, cfg.intermediate_size, ("embed", "mlp"), init_std=std, rngs=rngs)
    self.ffn_output = Linear(cfg.intermediate_size, h, ("mlp", "embed"), init_std=std, rngs=rngs)
    self.full_layer_layer_norm = LayerNorm(h, eps=cfg.layer_norm_eps, rngs=rngs)
    self.hidden_act = cfg.hidden_act

  def __call__(self, x, mask, kv_lengths, key):
    x = self.attention(x, mask, kv_lengths, key)
    y = constrain(ACTIVATIONS[self.hidden_act](self.ffn(x)), ("batch", "length", "mlp"))
    return constrain(self.full_layer_layer_norm(self.ffn_output(y) + x),
                     ("batch", "length", "act_embed"))


class AlbertLayerGroup(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.albert_layers = nnx.List([AlbertLayer(cfg, rngs=rngs)])


class AlbertTransformer(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.embedding_hidden_mapping_in = Linear(cfg.embedding_size, cfg.hidden_size, (None, "embed"),
                                              init_std=cfg.initializer_range, rngs=rngs)
    self.albert_layer_groups = nnx.List([AlbertLayerGroup(cfg, rngs=rngs)])
    self.num_layers, self.scan, self.remat_policy = cfg.num_hidden_layers, cfg.scan_layers, cfg.remat

  def __call__(self, x, mask, kv_lengths, key):
    layer = self.albert_layer_groups[0].albert_layers[0]
    step = layers.remat(lambda h, k: (layer(h, mask, kv_lengths, k), None), self.remat_policy)
    keys = None if key is None else jax.random.split(key, self.num_layers)
    h = self.embedding_hidden_mapping_in(x)
    if self.scan:
      return jax.lax.scan(step, h, keys, length=self.num_layers)[0]
    for i in range(self.num_layers):
      h, _ = step(h, None if keys is None else keys[i])
    return h


class AlbertModel(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.embeddings = bert.BertEmbeddings(cfg, rngs=rngs, dim=cfg.embedding_size)
    self.encoder = AlbertTransformer(cfg, rngs=rngs)
    self.pooler = Linear(cfg.hidden_size, cfg.hidden_size, ("embed", None),
                         init_std=cfg.initializer_range, rngs=rngs)
    self.dtype = jnp.dtype(cfg.dtype)

  def __call__(self, input_ids, token_type_ids, attention_mask, key=None):
    """Returns (sequence output [b, t, H], pooled output [b, H])."""
    k1, k2 = layers.split_key(key, 2)
    mask, kv_lengths = bert.attention_masks(attention_mask)
    x = self.embeddings(input_ids, token_type_ids, self.dtype, k1)
    x = self.encoder(x, mask, kv_lengths, k2)
    return x, jnp.tanh(self.pooler(x[:, 0]))


class AlbertMLMHead(nnx.Module):
  """H -> E, activation, LayerNorm, then the decoder tied to the (size E) word embeddings."""

  def __init__(self, cfg, *, rngs):
    e = cfg.embedding_size
    self.dense = Linear(cfg.hidden_size, e, ("embed", None), init_std=cfg.initializer_range, rngs=rngs)
    self.LayerNorm = LayerNorm(e, eps=cfg.layer_norm_eps, rngs=rngs, axis_name=None)
    self.bias = layers.param(rngs, layers.zeros, (cfg.vocab_size,), ("vocab",))
    self.hidden_act = cfg.hidden_act

  def __call__(self, x, word_embeddings):
    x = self.LayerNorm(ACTIVATIONS[self.hidden_act](self.dense(x)))
    return (word_embeddings.attend(x) + self.bias[...].astype(x.dtype)).astype(jnp.float32)


class AlbertSOPHead(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.classifier = Linear(cfg.hidden_size, 2, ("embed", None), init_std=cfg.initializer_range,
                             rngs=rngs)
    self.rate = cfg.classifier_dropout_prob

  def __call__(self, pooled, key):
    return self.classifier(dropout(pooled, self.rate, key)).astype(jnp.float32)


class AlbertForPreTraining(nnx.Module):
  """Encoder + MLM head (tied) + sentence-order head (label 1 = segments swapped)."""

  def __init__(self, cfg, *, rngs):
    self.albert = AlbertModel(cfg, rngs=rngs)
    self.predictions = AlbertMLMHead(cfg, rngs=rngs)
    self.sop_classifier = AlbertSOPHead(cfg, rngs=rngs)

  def __call__(self, input_ids, token_type_ids, attention_mask, *,
               masked_positions=None, key=None):
    """Returns dict(mlm_logits, sop_logits, hidden_states); `masked_positions` as in BERT."""
    k1, k2 = layers.split_key(key, 2)
    hidden, pooled = self.albert(input_ids, token_type_ids, attention_mask, k1)
    x = bert.gather_positions(hidden, masked_positions)
    mlm_logits = self.predictions(x, self.albert.embeddings.word_embeddings)
    return dict(mlm_logits=mlm_logits, sop_logits=self.sop_classifier(pooled, k2),
                hidden_states=hidden)
