"""ELECTRA: a small MLM generator and a discriminator trained together.

The generator fills the masked positions with samples from its MLM
distribution; the discriminator tells, at every token, whether it was
replaced (objectives/losses.electra_pretraining). Both read one shared
embeddings module (word, position and token-type tables of size
`embedding_size`, and their LayerNorm), as in the paper.

Names mirror HF: the discriminator is `ElectraForPreTraining`
(`electra.embeddings`, `electra.embeddings_project` when embedding_size !=
hidden_size, `electra.encoder.layer.{i}`, `discriminator_predictions`); the
generator, under `generator.`, is `ElectraForMaskedLM` less its embeddings
(`generator.electra.encoder.layer.{i}`, `generator.generator_predictions`,
`generator.generator_lm_head.bias`, the decoder tied to the shared word
embeddings). The generator's sizes are the model section's `generator_*` keys.
"""
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lm_jax.models import bert, layers
from lm_jax.models.layers import LayerNorm, Linear


def generator_config(cfg):
  """The model section with the generator's sizes in BERT's key names."""
  return ml_collections.ConfigDict(dict(
      cfg.to_dict(), hidden_size=cfg.generator_hidden_size,
      num_hidden_layers=cfg.generator_num_hidden_layers,
      num_attention_heads=cfg.generator_num_attention_heads,
      intermediate_size=cfg.generator_intermediate_size))


class ElectraModel(nnx.Module):
  """(Embeddings,) their projection to hidden_size when sizes differ, BERT's encoder.

  The generator's has no embeddings of its own: it is handed the discriminator's output.
  """

  def __init__(self, cfg, *, rngs, own_embeddings=True):
    e, h = cfg.embedding_size, cfg.hidden_size
    self.embeddings = (bert.BertEmbeddings(cfg, rngs=rngs, dim=e) if own_embeddings else None)
    self.embeddings_project = (Linear(e, h, (None, "embed"), init_std=cfg.initializer_range,
                                      rngs=rngs) if e != h else None)
    self.encoder = bert.BertEncoder(cfg, rngs=rngs)

  def __call__(self, embedded, mask, kv_lengths, key):
    if self.embeddings_project is not None:
      embedded = self.embeddings_project(embedded)
    return self.encoder(embedded, mask, kv_lengths, key)


def encode(embeddings, model, input_ids, token_type_ids, attention_mask, dtype, key):
  """`model`'s (an ElectraModel's) last hidden states for token ids embedded by
  `embeddings` (the discriminator's, shared by the generator)."""
  k1, k2 = layers.split_key(key, 2)
  mask, kv_lengths = bert.attention_masks(attention_mask)
  return model(embeddings(input_ids, token_type_ids, dtype, k1), mask, kv_lengths, k2)


class ElectraDiscriminatorPredictions(nnx.Module):

  def __init__(self, cfg, *, rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.dense = Linear(h, h, ("embed", None), init_std=std, rngs=rngs)
    self.dense_prediction = Linear(h, 1, ("embed", None), init_std=std, rngs=rngs)

  def __call__(self, hidden):
    """[b, t] logits of "this token was replaced"."""
    return self.dense_prediction(bert.gelu(self.dense(hidden)))[..., 0].astype(jnp.float32)


class ElectraGeneratorPredictions(nnx.Module):

  def __init__(self, cfg, *, rngs):
    e = cfg.embedding_size
    self.dense = Linear(cfg.hidden_size, e, ("embed", None), init_std=cfg.initializer_range,
                        rngs=rngs)
    self.LayerNorm = LayerNorm(e, eps=cfg.layer_norm_eps, rngs=rngs, axis_name=None)

  def __call__(self, hidden):
    return self.LayerNorm(bert.gelu(self.dense(hidden)))


class ElectraGeneratorLMHead(nnx.Module):
  """The decoder tied to the word embeddings: only its bias is a parameter."""

  def __init__(self, cfg, *, rngs):
    self.bias = layers.param(rngs, layers.zeros, (cfg.vocab_size,), ("vocab",))

  def __call__(self, x, word_embeddings):
    return (word_embeddings.attend(x) + self.bias[...].astype(x.dtype)).astype(jnp.float32)


class ElectraGenerator(nnx.Module):

  def __init__(self, cfg, *, rngs):
    g = generator_config(cfg)
    self.electra = ElectraModel(g, rngs=rngs, own_embeddings=False)
    self.generator_predictions = ElectraGeneratorPredictions(g, rngs=rngs)
    self.generator_lm_head = ElectraGeneratorLMHead(g, rngs=rngs)


class ElectraForPreTraining(nnx.Module):
  """The discriminator, with the generator under `generator`."""

  def __init__(self, cfg, *, rngs):
    self.electra = ElectraModel(cfg, rngs=rngs)
    self.discriminator_predictions = ElectraDiscriminatorPredictions(cfg, rngs=rngs)
    self.generator = ElectraGenerator(cfg, rngs=rngs)
    self.dtype = jnp.dtype(cfg.dtype)
    self.discriminator_weight = cfg.discriminator_weight  # the loss's weight (ELECTRA: 50)

  def _encode(self, model, input_ids, token_type_ids, attention_mask, key):
    return encode(self.electra.embeddings, model, input_ids, token_type_ids, attention_mask,
                  self.dtype, key)

  def generator_logits(self, input_ids, token_type_ids, attention_mask, masked_positions=None,
                       key=None):
    """The generator's MLM logits [b, p, vocab] at `masked_positions` (else [b, t, vocab])."""
    hidden = self._encode(self.generator.electra, input_ids, token_type_ids, attention_mask, key)
    x = self.generator.generator_predictions(bert.gather_positions(hidden, masked_positions))
    return self.generator.generator_lm_head(x, self.electra.embeddings.word_embeddings)

  def discriminator(self, input_ids, token_type_ids, attention_mask, key=None):
    """(replaced-token logits [b, t], last hidden states [b, t, hidden])."""
    hidden = self._encode(self.electra, input_ids, token_type_ids, attention_mask, key)
    return self.discriminator_predictions(hidden), hidden

  def __call__(self, input_ids, token_type_ids, attention_mask, *, key=None):
    """Returns dict(discriminator_logits, hidden_states (the discriminator's),
    mlm_logits (the generator's)) for one input."""
    k1, k2 = layers.split_key(key, 2)
    logits, hidden = self.discriminator(input_ids, token_type_ids, attention_mask, k1)
    return dict(discriminator_logits=logits, hidden_states=hidden,
                mlm_logits=self.generator_logits(input_ids, token_type_ids, attention_mask, key=k2))
