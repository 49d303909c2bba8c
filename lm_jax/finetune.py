"""Fine-tuning: what a run with `model.task` adds to train.run.

The run itself is pre-training's (config system, mesh, checkpoints,
metrics, resume); this module gives it
- `with_pretrained_model`: the architecture of init.from_workdir's encoder;
- `load_encoder`: that workdir's encoder weights, copied into fresh params
  by name (the task head keeps its initialisation);
- `Evaluator`: predictions over the whole evaluation set, pooled per
  document (sliding windows), scored with the task's metrics;
- `run_seeds`: `train.seeds` runs and the median of their final metrics,
  since single-seed fine-tuning numbers are known not to reproduce.
"""
import json
import os

import jax
import ml_collections
import numpy as np

from lm_jax import config as config_lib, parallel, pretrained
from lm_jax.errors import UserError
from lm_jax.models import classifiers
from lm_jax.objectives import task_metrics

TASK_KEYS = ("task", "labels")  # the model keys a fine-tuning config adds to an encoder's


def with_pretrained_model(config):
  """A copy of `config` whose model is init.from_workdir's encoder plus this
  config's task keys and runtime keys (dtype, dropout, ...)."""
  path = config.init.from_workdir
  encoder = pretrained.read_config(path).model
  if encoder.family not in classifiers.BASE_PREFIX:
    raise UserError(f"{path} holds a {encoder.family} model; fine-tuning heads exist for "
                    f"{', '.join(classifiers.BASE_PREFIX)}.")
  config = ml_collections.ConfigDict(config.to_dict())
  model = ml_collections.ConfigDict({k: v for k, v in encoder.to_dict().items()
                                     if k not in TASK_KEYS})
  model.update({k: config.model[k] for k in config_lib.RUNTIME_MODEL_KEYS
                if k in config.model and k in model})
  model.update({k: config.model[k] for k in TASK_KEYS})
  config.model = model
  return config


def _copy_matching(target, source, where):
  """`target`'s tree with each leaf taken from the same path in `source`."""
  if not isinstance(target, dict):
    if target.shape != source.shape:
      raise UserError(f"The pre-trained {where} has shape {source.shape}, this model "
                      f"{target.shape}; fine-tune with the pre-training run's model sizes.")
    return source
  return {k: _copy_matching(v, source[k], f"{where}.{k}") for k, v in target.items()}


def load_encoder(workdir, params, mesh, rule_table):
  """`params` with the encoder of `workdir`'s latest checkpoint, restored
  directly into the shardings of `mesh`."""
  config, _, encoder_params, step = pretrained.restore_params(workdir, mesh=mesh,
                                                              rule_table=rule_table)
  prefix = classifiers.BASE_PREFIX[config.model.family]
  print(f"Fine-tuning the encoder of {workdir} (step {step}).", flush=True)
  return dict(params, **{prefix: _copy_matching(params[prefix], encoder_params[prefix], prefix)})


class Evaluator:
  """`evaluator(params)` -> {eval_<metric>: value} over every evaluation record."""

  def __init__(self, ms, config, mesh, rule_table, data):
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


def final_metrics(workdir):
  """The last evaluation's metrics in a run's metrics.jsonl."""
  last = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if any(k.startswith("eval_") for k in record):
        last = record
  return last


def run_seeds(config, workdir, run):
  """`run(config, dir)` for seeds seed .. seed + train.seeds - 1, each in
  WORKDIR/seed_<s> (resumable), then WORKDIR/seeds.json: every seed's final
  evaluation and the median of each metric."""
  runs = {}
  for k in range(config.train.seeds):
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed, c.train.seeds = config.seed + k, 1
    sub = os.path.join(workdir, f"seed_{c.seed}")
    run(c, sub)
    runs[c.seed] = final_metrics(sub)
  names = sorted({n for m in runs.values() for n in m if n.startswith("eval_")})
  median = {n: float(np.median([m[n] for m in runs.values() if n in m])) for n in names}
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "seeds.json"), "w") as f:
      json.dump(dict(median=median, seeds=runs), f, indent=2)
    print(f"Median over {len(runs)} seeds: " +
          " | ".join(f"{n[5:]} {v:.4g}" for n, v in median.items()), flush=True)
  return median
