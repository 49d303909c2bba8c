"""A fine-tuned classifier (model.task) for inference.

    lm_jax.load("runs/sst2").predict(["A delightful film."])   # [("positive", 0.97)]
    lm_jax.load("runs/sst2").predict("A delightful film.")     # ("positive", 0.97)

Inputs, batching and truncation as in encoder.Encoder, whose hidden_states
and embed it has too (its encoder's, without the head).
"""
import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.errors import UserError
from lm_jax.inference import batching, encoder


class Classifier(encoder.Encoder):
  """A fine-tuned model (model.task): `logits` and, for sequence tasks, `predict`."""

  def __init__(self, config, model_state, params, tokenizer, step=None):
    super().__init__(config, model_state, params, tokenizer, step)
    model = model_state.model
    self._logits = jax.jit(lambda p, ids, mask: model(p)(ids, jnp.zeros_like(ids), mask)["logits"])

  @staticmethod
  def _hidden_states(net, ids, mask):
    return net.encode(ids, jnp.zeros_like(ids), mask, None)[0]

  def logits(self, inputs, batch_size=batching.BATCH_SIZE, truncation=False, progress=None):
    """[batch, labels] (sequence tasks) or [batch, longest, labels] (token tasks,
    zeros on padding); without the batch axis for one text."""
    if self.config.model.task != "sequence_classification":
      return self._per_token(inputs, self._logits, batch_size, truncation, progress)
    rows, single = self._rows(inputs, truncation)
    out = np.zeros((len(rows), len(self.config.model.labels)), np.float32)
    for batch, logits in self._map(rows, lambda b: self._logits(self.params, b.ids, b.mask),
                                   batch_size, progress):
      out[batch.index] = logits[:len(batch.index)]
    return out[0] if single else out

  def predict(self, texts, batch_size=batching.BATCH_SIZE, truncation=False, progress=None):
    """Per text: (label, probability) of the most likely class, or the score
    (regression); one of them for one text."""
    if self.config.model.task != "sequence_classification":
      raise UserError("predict() is for sequence tasks; use logits() for token classification.")
    logits = self.logits(texts, batch_size, truncation, progress)
    single, labels = logits.ndim == 1, self.config.model.labels
    logits = logits[None] if single else logits
    if len(labels) == 1:
      out = [float(x) for x in logits[:, 0]]
    else:
      probs = encoder.softmax(logits)
      out = [(labels[i], float(p[i])) for p, i in zip(probs, probs.argmax(-1))]
    return out[0] if single else out
