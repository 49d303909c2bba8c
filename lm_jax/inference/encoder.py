"""BERT-family encoders for inference: `MaskedLM` (pre-training runs) and the
shared `Encoder` base of MaskedLM and classifier.Classifier.

    model = lm_jax.load("runs/tiny")
    logits = model.mlm_logits(["She was the [MASK] of the two daughters."])
    model.fill_mask("She was the [MASK] of the two daughters.")
    hidden = model.hidden_states(["Some text.", "Another."])
"""
import jax
import numpy as np

from lm_jax import config as config_lib
from lm_jax.errors import UserError


def softmax(logits):
  """Probabilities over the last axis (numpy, max-shifted)."""
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


class Encoder:
  """A Transformer encoder with its tokenizer. Inputs are a list of texts or of token-id lists."""

  def __init__(self, config, model_state, params, tokenizer, step=None):
    self.config = config
    self.tokenizer = tokenizer
    self.step = step
    self._ms, self.params = model_state, params
    self._forward = jax.jit(lambda p, ids, types, mask: model_state.model(p)(ids, types, mask))

  def encode(self, inputs):
    """Texts become `[CLS] text [SEP]`; id lists are taken as they are.

    Returns numpy input_ids, token_type_ids, attention_mask, right-padded.
    """
    tok = self.tokenizer
    if inputs and isinstance(inputs[0], str):
      inputs = [[tok.cls_id, *ids, tok.sep_id] for ids in tok.encode(inputs)]
    longest = max(len(x) for x in inputs)
    limit = config_lib.max_sequence_length(self.config.model)
    if longest > limit:
      raise UserError(f"An input has {longest} tokens but the model takes at most {limit}; "
                      "shorten or split it.")
    ids = np.full((len(inputs), longest), tok.pad_id, np.int32)
    mask = np.zeros_like(ids)
    for i, x in enumerate(inputs):
      ids[i, :len(x)] = x
      mask[i, :len(x)] = 1
    return ids, np.zeros_like(ids), mask

  def __call__(self, inputs):
    """All outputs of the model (numpy), for a batch of texts or id lists."""
    return self.forward(*self.encode(inputs))

  def forward(self, input_ids, token_type_ids, attention_mask):
    """All outputs of the model (numpy), for an encoded batch [batch, length]."""
    out = self._forward(self.params, input_ids, token_type_ids, attention_mask)
    return jax.tree.map(np.asarray, out)


class MaskedLM(Encoder):
  """A pre-trained BERT, RoBERTa, ALBERT or ELECTRA: masked-LM logits, hidden states, fill-mask."""

  def mlm_logits(self, inputs):
    """[batch, length, vocab] masked-LM logits (float32)."""
    return self(inputs)["mlm_logits"]

  def hidden_states(self, inputs):
    """[batch, length, hidden] last-layer hidden states."""
    return self(inputs)["hidden_states"]

  def fill_mask(self, text, top_k=5):
    """For each [MASK] in `text`, the `top_k` (token, probability) pairs."""
    ids, _, _ = self.encode([text])
    logits = self.mlm_logits([text])[0]
    result = []
    for pos in np.flatnonzero(ids[0] == self.tokenizer.mask_id):
      probs = softmax(logits[pos])
      top = np.argsort(-probs)[:top_k]
      result.append([(self.tokenizer.id_to_token(i), float(probs[i])) for i in top])
    return result
