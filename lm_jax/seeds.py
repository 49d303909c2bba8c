"""`train.seeds=N`: N runs with seeds seed .. seed+N-1 and the median of their
final evaluation metrics (single-seed fine-tuning numbers do not reproduce).

    WORKDIR/seed_<s>/   each run (resumable, like any workdir)
    WORKDIR/seeds.json  every seed's final eval_* metrics and their medians

With train.seeds unset or 1, `run` is train.run in WORKDIR itself.
"""
import json
import os

import jax
import ml_collections
import numpy as np

from lm_jax import train


def final_metrics(workdir):
  """The last evaluation's metrics in a run's metrics.jsonl."""
  last = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if any(k.startswith("eval_") for k in record):
        last = record
  return last


def run(config, workdir):
  """train.run for each of train.seeds seeds; returns the medians (None for one seed)."""
  if config.train.get("seeds", 1) <= 1:
    return train.run(config, workdir)
  runs = {}
  for k in range(config.train.seeds):
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed, c.train.seeds = config.seed + k, 1
    sub = os.path.join(workdir, f"seed_{c.seed}")
    train.run(c, sub)
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
