"""Pre-training losses. Each returns (scalar loss, dict of scalar metrics)."""
import jax.numpy as jnp
import optax


def weighted_cross_entropy(logits, labels, weights):
  """Mean token cross-entropy and accuracy over entries with weight > 0."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  denom = jnp.maximum(weights.sum(), 1e-8)
  correct = (logits.argmax(-1) == labels).astype(jnp.float32)
  return (losses * weights).sum() / denom, (correct * weights).sum() / denom


def bert_pretraining(model, batch, key):
  """Masked LM over the masked positions + next-sentence prediction."""
  out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
              masked_positions=batch["masked_positions"], key=key)
  mlm_loss, mlm_acc = weighted_cross_entropy(out["mlm_logits"], batch["masked_ids"],
                                             batch["masked_weights"])
  nsp_loss, nsp_acc = weighted_cross_entropy(out["nsp_logits"], batch["nsp_labels"],
                                             jnp.ones_like(batch["nsp_labels"], jnp.float32))
  metrics = dict(mlm_loss=mlm_loss, mlm_accuracy=mlm_acc, nsp_loss=nsp_loss, nsp_accuracy=nsp_acc)
  return mlm_loss + nsp_loss, metrics

