"""Evaluation during training: `evaluator(params)` -> {eval_<metric>: value}.

- `HeldOutLoss` (pre-training): the family's loss and metrics, averaged over
  the first `train.eval_steps` held-out batches (fixed masks);
- `TaskMetrics` (fine-tuning): predictions over the whole evaluation set,
  pooled per document (sliding windows), scored with the task's metrics.

Each is built as evaluator(ms, config, mesh, rule_table, eval_data, loss),
`ms` being the run's state.ModelState.
"""
import jax
import numpy as np

from lm_jax import parallel
from lm_jax.models import classifiers
from lm_jax.objectives import task_metrics


class HeldOutLoss:
  """Mean loss and metrics over the first `train.eval_steps` held-out batches."""

  def __init__(self, ms, config, mesh, rule_table, data, loss):
    self.config, self.mesh, self.rule_table, self.data = config, mesh, rule_table, data

    def eval_step(params, batch):
      value, m = loss(ms.model(params), batch, None)
      return dict(m, loss=value)

    self.eval_step = jax.jit(eval_step, in_shardings=(ms.param_shardings,
                                                      parallel.batch_sharding(mesh, rule_table)))

  def __call__(self, params):
    t = self.config.train
    totals = {}
    for k in range(t.eval_steps):
      local = self.data.global_batch(k, t.batch_size // t.grad_accum_steps)
      local = {n: parallel.process_slice(v) for n, v in local.items()}
      m = jax.device_get(self.eval_step(params, parallel.host_to_global(local, self.mesh,
                                                                        self.rule_table)))
      for n, v in m.items():
        totals[n] = totals.get(n, 0.0) + float(v) / t.eval_steps
    return {f"eval_{n}": v for n, v in totals.items()}


class TaskMetrics:
  """A fine-tuning task's metrics over every evaluation record."""

  def __init__(self, ms, config, mesh, rule_table, data, loss=None):
    del loss  # scored by task metrics, not by the training loss
    self.config, self.mesh, self.rule_table, self.data = config, mesh, rule_table, data
    batch_sh = parallel.batch_sharding(mesh, rule_table)
    forward = lambda p, b: ms.model(p)(b["input_ids"], b["token_type_ids"],
                                       b["attention_mask"])["logits"]
    # Replicated output: every process gets all predictions.
    self.predict = jax.jit(forward, in_shardings=(ms.param_shardings, batch_sh),
                           out_shardings=parallel.replicated(mesh))

  def logits(self, params):
    """[rows, ...] logits of every evaluation row, in order."""
    batch_size = self.config.train.batch_size // self.config.train.grad_accum_steps
    out = []
    for batch in self.data.eval_batches(batch_size):
      local = {k: parallel.process_slice(v) for k, v in batch.items()}
      out.append(np.asarray(self.predict(params, parallel.host_to_global(
          local, self.mesh, self.rule_table))))
    return np.concatenate(out)[:len(self.data.rows)]

  def __call__(self, params):
    logits, data = self.logits(params), self.data
    labels = data.labels
    if self.config.model.task == classifiers.TOKEN:
      names = lambda ids: [labels[i] for i in ids]
      outside = labels.index("O") if "O" in labels else 0
      predicted = []
      for row, tags in enumerate(data.targets):  # one row per sentence
        starts = np.flatnonzero(data.rows[row]["weights"] > 0)  # words' first pieces
        ids = list(logits[row, starts].argmax(-1))
        predicted.append(names(ids + [outside] * (len(tags) - len(ids))))  # cut words: "O"
      scores = task_metrics.token_metrics([names(t) for t in data.targets], predicted)
    else:
      scores = _document_metrics(logits, data.row_document, data.targets)
    return {f"eval_{k}": float(v) for k, v in scores.items()}


def _document_metrics(logits, row_document, targets):
  """Metrics of the documents' mean logits over their windows."""
  sums = np.zeros((len(targets), logits.shape[-1]), np.float64)
  np.add.at(sums, row_document, logits)
  pooled = sums / np.bincount(row_document, minlength=len(targets))[:, None]
  if pooled.shape[-1] == 1:
    return task_metrics.regression_metrics(targets, pooled[:, 0])
  return task_metrics.classification_metrics(targets, pooled)
