"""Run metrics: WORKDIR/metrics.jsonl, TensorBoard events, a progress line.

Only process 0 writes. On resume, lines past the restored step are dropped
first, so metrics.jsonl reads as one uninterrupted run.
"""
import datetime
import json
import os
import time

import jax


class MetricsWriter:

  def __init__(self, workdir, *, resume_step, total_steps):
    self.enabled = jax.process_index() == 0
    self.total = total_steps
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tb = None
    if not self.enabled:
      return
    _truncate_after(self.path, resume_step)
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def write(self, step, metrics):
    """One JSON line {step, **metrics} and TensorBoard scalars."""
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in record.items():
      if k != "step":
        self.tb.add_scalar(k, v, step)

  def progress(self, step, metrics, steps_per_s):
    if not self.enabled:
      return
    eta = datetime.timedelta(seconds=int((self.total - step) / max(steps_per_s, 1e-9)))
    shown = " | ".join(f"{k} {metrics[k]:.4g}" for k in ("loss", "mlm_accuracy", "nsp_accuracy", "sop_accuracy", "disc_accuracy", "perplexity", "accuracy",
                                                         "forward_perplexity", "backward_perplexity")
                       if k in metrics)
    print(f"step {step}/{self.total} | {shown} | {metrics['tokens_per_s'] / 1e3:.1f}k tok/s "
          f"| ETA {eta}", flush=True)

  def eval_line(self, step, metrics):
    if self.enabled:
      print(f"eval at step {step} | " + " | ".join(f"{k[5:]} {v:.4g}" for k, v in metrics.items()),
            flush=True)

  def close(self):
    if self.tb is not None:
      self.tb.close()


def _truncate_after(path, step):
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if l.strip() and json.loads(l)["step"] <= step]
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(lines)
  os.replace(tmp, path)


class Stopwatch:
  """Wall time between log lines, for tokens/s."""

  def __init__(self):
    self.t = time.perf_counter()

  def lap(self):
    now = time.perf_counter()
    dt, self.t = now - self.t, now
    return dt
