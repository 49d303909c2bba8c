"""RoBERTa: BERT's encoder with HF RoBERTa's position ids and an MLM-only head.

Names mirror HF's `RobertaForMaskedLM` (`roberta.encoder.layer.{i}...`,
`lm_head.dense`, `lm_head.layer_norm`, `lm_head.bias`); there is no pooler.
As in fairseq and HF, positions are counted from `pad_token_id + 1` over the
non-padding tokens and padding sits at position `pad_token_id`, so the table
holds max_position_embeddings = longest input + pad_token_id + 1 rows.
"""
import jax.numpy as jnp
from flax import nnx

from lm_jax.models import bert, layers
from lm_jax.models.layers import LayerNorm, Linear


def position_ids(input_ids, pad_token_id):
  """HF's create_position_ids_from_input_ids: pad_token_id + 1, + 2, ... over real tokens."""
  real = (input_ids != pad_token_id).astype(jnp.int32)
  return jnp.cumsum(real, axis=1) * real + pad_token_id


class RobertaLMHead(nnx.Module):
  """dense, gelu, layer_norm, then the decoder tied to the word embeddings, plus a bias."""

  def __init__(self, cfg, *, rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.dense = Linear(h, h, ("embed", None), init_std=std, rngs=rngs)
    self.layer_norm = LayerNorm(h, eps=cfg.layer_norm_eps, rngs=rngs)
    self.bias = layers.param(rngs, layers.zeros, (cfg.vocab_size,), ("vocab",))

  def __call__(self, x, word_embeddings):
    x = self.layer_norm(bert.gelu(self.dense(x)))
    return (word_embeddings.attend(x) + self.bias[...].astype(x.dtype)).astype(jnp.float32)


class RobertaForMaskedLM(nnx.Module):

  def __init__(self, cfg, *, rngs):
    self.roberta = bert.BertModel(cfg, rngs=rngs, add_pooling_layer=False)
    self.lm_head = RobertaLMHead(cfg, rngs=rngs)
    self.pad_token_id = cfg.pad_token_id

  def __call__(self, input_ids, token_type_ids, attention_mask, *,
               masked_positions=None, key=None):
    """Returns dict(mlm_logits, hidden_states); `masked_positions` as in BERT."""
    positions = position_ids(input_ids, self.pad_token_id)
    hidden, _ = self.roberta(input_ids, token_type_ids, attention_mask, key, positions)
    x = bert.gather_positions(hidden, masked_positions)
    return dict(mlm_logits=self.lm_head(x, self.roberta.embeddings.word_embeddings),
                hidden_states=hidden)
