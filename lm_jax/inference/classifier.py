"""A fine-tuned classifier (model.task) for inference.

    lm_jax.load("runs/sst2").predict(["A delightful film."])   # [("positive", 0.97)]
"""
from lm_jax.errors import UserError
from lm_jax.inference import encoder


class Classifier(encoder.Encoder):
  """A fine-tuned model (model.task): `logits` and, for sequence tasks, `predict`."""

  def logits(self, inputs):
    """[batch, labels] (sequence tasks) or [batch, length, labels] (token tasks)."""
    return self(inputs)["logits"]

  def predict(self, texts):
    """Per text: (label, probability) of the most likely class, or the score (regression)."""
    if self.config.model.task != "sequence_classification":
      raise UserError("predict() is for sequence tasks; use logits() for token classification.")
    logits, labels = self.logits(texts), self.config.model.labels
    if len(labels) == 1:
      return [float(x) for x in logits[:, 0]]
    probs = encoder.softmax(logits)
    return [(labels[i], float(p[i])) for p, i in zip(probs, probs.argmax(-1))]
