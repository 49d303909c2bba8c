"""Pre-training losses. Each returns (scalar loss, dict of scalar metrics)."""
import jax
import jax.numpy as jnp
import optax

from lm_jax.objectives import sampled_softmax


def weighted_cross_entropy(logits, labels, weights):
  """Mean token cross-entropy and accuracy over entries with weight > 0."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  denom = jnp.maximum(weights.sum(), 1e-8)
  correct = (logits.argmax(-1) == labels).astype(jnp.float32)
  return (losses * weights).sum() / denom, (correct * weights).sum() / denom


def _mlm_and_sentence_task(model, batch, key, task):
  """Masked LM + a two-way sentence-level task (`task`: "nsp" or "sop")."""
  out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
              masked_positions=batch["masked_positions"], key=key)
  mlm_loss, mlm_acc = weighted_cross_entropy(out["mlm_logits"], batch["masked_ids"],
                                             batch["masked_weights"])
  labels = batch[f"{task}_labels"]
  task_loss, task_acc = weighted_cross_entropy(out[f"{task}_logits"], labels,
                                               jnp.ones_like(labels, jnp.float32))
  metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": mlm_acc, f"{task}_loss": task_loss,
             f"{task}_accuracy": task_acc}
  return mlm_loss + task_loss, metrics


def bert_pretraining(model, batch, key):
  """Masked LM over the masked positions + next-sentence prediction."""
  return _mlm_and_sentence_task(model, batch, key, "nsp")


def causal_lm(model, batch, key):
  """Next-token prediction on packed windows; padding has weight 0."""
  out = model(batch["input_ids"], batch["segment_ids"], key=key)
  loss, accuracy = weighted_cross_entropy(out["logits"], batch["labels"], batch["weights"])
  return loss, dict(perplexity=jnp.exp(loss), accuracy=accuracy)


def masked_lm(model, batch, key):
  """Masked LM alone (RoBERTa: no next-sentence objective)."""
  out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
              masked_positions=batch["masked_positions"], key=key)
  mlm_loss, mlm_acc = weighted_cross_entropy(out["mlm_logits"], batch["masked_ids"],
                                             batch["masked_weights"])
  return mlm_loss, dict(mlm_loss=mlm_loss, mlm_accuracy=mlm_acc)


def albert_pretraining(model, batch, key):
  """Masked LM + sentence-order prediction (label 1 = the two segments swapped)."""
  return _mlm_and_sentence_task(model, batch, key, "sop")


def _put(ids, positions, values, weights):
  """ids [b, t] with `values` [b, p] written at `positions` where weights > 0."""
  rows = jnp.arange(ids.shape[0])[:, None]
  current = jnp.take_along_axis(ids, positions, axis=1)
  return ids.at[rows, positions].set(jnp.where(weights > 0, values, current))


def sample_tokens(logits, uniform):
  """One token per row of `logits` [..., vocab], by inverting the softmax's CDF
  at `uniform` [...] in [0, 1): the pipeline draws those from (seed, example),
  so the sample is reproducible in training and evaluation alike."""
  cdf = jnp.cumsum(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=-1)
  return jnp.minimum((cdf < uniform[..., None]).sum(-1), logits.shape[-1] - 1).astype(jnp.int32)


def electra_pretraining(model, batch, key):
  """Generator MLM + `discriminator_weight` x replaced-token detection.

  The generator's samples replace every masked position; no gradient flows
  through the sampling, so the discriminator's loss trains the generator
  only through the shared embeddings. A sample equal to the original token
  counts as not replaced, as in ELECTRA.
  """
  k_gen, k_disc = (None, None) if key is None else jax.random.split(key)
  ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
  positions, weights = batch["masked_positions"], batch["masked_weights"]
  gen_logits = model.generator_logits(ids, types, mask, positions, key=k_gen)
  mlm_loss, mlm_acc = weighted_cross_entropy(gen_logits, batch["masked_ids"], weights)
  sampled = sample_tokens(jax.lax.stop_gradient(gen_logits), batch["replacement_uniform"])
  original = _put(ids, positions, batch["masked_ids"], weights)
  corrupted = _put(original, positions, sampled, weights)
  replaced = (corrupted != original).astype(jnp.float32)
  disc_logits, _ = model.discriminator(corrupted, types, mask, key=k_disc)
  real = mask.astype(jnp.float32)
  denom = jnp.maximum(real.sum(), 1.0)
  disc_loss = (optax.sigmoid_binary_cross_entropy(disc_logits, replaced) * real).sum() / denom
  disc_acc = (((disc_logits > 0) == (replaced > 0)).astype(jnp.float32) * real).sum() / denom
  metrics = dict(mlm_loss=mlm_loss, mlm_accuracy=mlm_acc, disc_loss=disc_loss,
                 disc_accuracy=disc_acc, replaced_fraction=(replaced * real).sum() / denom)
  return mlm_loss + model.discriminator_weight * disc_loss, metrics


def elmo_bilm(model, batch, key, carry=None):
  """ELMo's loss: the mean of the forward and backward LMs' next-token losses.

  Training (`key` given) uses the sampled softmax (`model.num_sampled`
  negatives), evaluation (`key=None`) the full softmax, so eval perplexities
  are exact. Without `carry` the LSTMs start from zeros and the result is
  (loss, metrics); with it, from `carry` and (loss, (metrics, new carry)).
  """
  k_model, k_fwd, k_bwd = (None,) * 3 if key is None else jax.random.split(key, 3)
  out = model(batch["chars"], batch["chars_reverse"], state=carry, key=k_model)
  w, b = model.softmax.W[...], model.softmax.b[...]
  metrics, total = {}, 0.0
  for name, top, labels, k in (("forward", out["forward"][-1], batch["next_ids"], k_fwd),
                               ("backward", out["backward"][-1], batch["next_ids_reverse"], k_bwd)):
    x = top.reshape(-1, top.shape[-1])
    if key is None:
      losses = sampled_softmax.full_cross_entropy(x, labels.reshape(-1), w, b)
    else:
      losses = sampled_softmax.sampled_cross_entropy(x, labels.reshape(-1), w, b, k, model.num_sampled)
    metrics[f"{name}_loss"] = losses.mean()
    metrics[f"{name}_perplexity"] = jnp.exp(losses.mean())
    total += losses.mean() / 2
  if carry is None:
    return total, metrics
  return total, (metrics, jax.lax.stop_gradient(out["state"]))


def classification(model, batch, key):
  """Fine-tuning: cross-entropy over the classes, or the squared error when the
  head has one output (regression), at entries with weight > 0: every example
  of a sequence task, the first piece of each word of a token task."""
  logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                 key=key)["logits"]
  weights = batch["weights"]
  if logits.shape[-1] == 1:
    denom = jnp.maximum(weights.sum(), 1e-8)
    loss = (jnp.square(logits[..., 0] - batch["labels"]) * weights).sum() / denom
    return loss, dict(mse=loss)
  loss, accuracy = weighted_cross_entropy(logits, batch["labels"], weights)
  return loss, dict(accuracy=accuracy)
