"""Fine-tuning heads on the BERT-family encoders.

Names mirror HF's `{Bert,Roberta,Electra}For{Sequence,Token}Classification`:
the encoder sits under the family's base prefix (`bert.`, `roberta.`,
`electra.`) exactly as in pre-training, so a pre-trained encoder is copied
in by name, and the head is `classifier.*`:

- BERT, sequence: the pooler ([CLS] -> dense -> tanh), dropout, `classifier`.
- RoBERTa / ELECTRA, sequence: [CLS] -> dropout -> `classifier.dense` ->
  tanh (RoBERTa) or gelu (ELECTRA) -> dropout -> `classifier.out_proj`.
- Every family, token: the last hidden states -> dropout -> `classifier`.

`model.labels` names the classes; a single label means regression (HF's
num_labels == 1). `model.task` picks the head.
"""
import jax.numpy as jnp
from flax import nnx

from lm_jax.models import bert, electra, layers, roberta
from lm_jax.models.layers import Linear, dropout

SEQUENCE = "sequence_classification"
TOKEN = "token_classification"
# The families with a fine-tuning head: their encoder's attribute name (HF's base_model_prefix).
BASE_PREFIX = {"bert": "bert", "roberta": "roberta", "electra": "electra"}


def _encoder(cfg, rngs, pooler):
  if cfg.family == "electra":
    return electra.ElectraModel(cfg, rngs=rngs)
  return bert.BertModel(cfg, rngs=rngs, add_pooling_layer=pooler)


class ClassificationHead(nnx.Module):
  """RoBERTa's and ELECTRA's sentence head on the first token's hidden state."""

  def __init__(self, cfg, *, rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.dense = Linear(h, h, ("embed", None), init_std=std, rngs=rngs)
    self.out_proj = Linear(h, len(cfg.labels), (None, None), init_std=std, rngs=rngs)
    self.activation = bert.gelu if cfg.family == "electra" else jnp.tanh
    self.rate = cfg.hidden_dropout_prob

  def __call__(self, hidden, key):
    k1, k2 = layers.split_key(key, 2)
    x = dropout(hidden[:, 0], self.rate, k1)
    return self.out_proj(dropout(self.activation(self.dense(x)), self.rate, k2))


class Classifier(nnx.Module):
  """An encoder with a sequence- or token-classification head (model.task)."""

  def __init__(self, cfg, *, rngs):
    self.family, self.task = cfg.family, cfg.task
    self.prefix = BASE_PREFIX[cfg.family]
    sequence_pooler = cfg.task == SEQUENCE and cfg.family == "bert"  # BERT's head reads the pooler
    setattr(self, self.prefix, _encoder(cfg, rngs, sequence_pooler))
    if cfg.task == SEQUENCE and cfg.family != "bert":
      self.classifier = ClassificationHead(cfg, rngs=rngs)
    else:
      self.classifier = Linear(cfg.hidden_size, len(cfg.labels), ("embed", None),
                               init_std=cfg.initializer_range, rngs=rngs)
    self.rate = cfg.hidden_dropout_prob
    self.pad_token_id = cfg.get("pad_token_id", 0)
    self.dtype = jnp.dtype(cfg.dtype)

  def encode(self, input_ids, token_type_ids, attention_mask, key):
    """(last hidden states [b, t, h], BERT's pooled output [b, h] or None)."""
    encoder = getattr(self, self.prefix)
    if self.family == "electra":
      return electra.encode(encoder.embeddings, encoder, input_ids, token_type_ids,
                            attention_mask, self.dtype, key), None
    positions = (roberta.position_ids(input_ids, self.pad_token_id)
                 if self.family == "roberta" else None)
    return encoder(input_ids, token_type_ids, attention_mask, key, positions)

  def __call__(self, input_ids, token_type_ids, attention_mask, *, key=None):
    """Returns dict(logits): [b, num_labels] (sequence) or [b, t, num_labels] (token)."""
    k1, k2 = layers.split_key(key, 2)
    hidden, pooled = self.encode(input_ids, token_type_ids, attention_mask, k1)
    if isinstance(self.classifier, ClassificationHead):
      logits = self.classifier(hidden, k2)
    else:
      features = pooled if self.task == SEQUENCE else hidden
      logits = self.classifier(dropout(features, self.rate, k2))
    return dict(logits=logits.astype(jnp.float32))
