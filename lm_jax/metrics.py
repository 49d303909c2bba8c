"""Run metrics: WORKDIR/metrics.jsonl, TensorBoard events, a progress line.

Only process 0 writes. On resume, lines past the restored step are dropped
first, so metrics.jsonl reads as one uninterrupted run. A local file is
appended to line by line; an object store has no append, so on gs:// the
lines are kept and the whole file is uploaded by `flush` (the loop calls it
before every checkpoint, so no resume can miss a logged step) and every
`REMOTE_FLUSH_S` seconds.
"""
import datetime
import json
import time

import jax

from lm_jax import paths

REMOTE_FLUSH_S = 60.0


class MetricsWriter:

  def __init__(self, workdir, *, resume_step, total_steps):
    self.enabled = jax.process_index() == 0
    self.total = total_steps
    self.path = paths.join(workdir, "metrics.jsonl")
    self.remote = paths.is_remote(self.path)
    self.tb = None
    if not self.enabled:
      return
    kept = _truncate_after(self.path, resume_step)
    self.lines = kept if self.remote else None  # the whole file, for each upload
    self.flushed = time.monotonic()
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self.tb = SummaryWriter(paths.join(workdir, "tensorboard"), flush_secs=30)

  def write(self, step, metrics):
    """One JSON line {step, **metrics} and TensorBoard scalars."""
    if not self.enabled:
      return
    record = {"step": int(step),  # ints (a train.phases phase) stay ints
              **{k: v if isinstance(v, int) else float(v) for k, v in metrics.items()}}
    line = json.dumps(record) + "\n"
    if self.remote:
      self.lines.append(line)
      if time.monotonic() - self.flushed > REMOTE_FLUSH_S:
        self.flush()
    else:
      with open(self.path, "a") as f:
        f.write(line)
    for k, v in record.items():
      if k != "step":
        self.tb.add_scalar(k, v, step)

  def progress(self, step, metrics, steps_per_s, shown_keys=("loss",)):
    """The progress line: step, the `shown_keys` metrics (the family's), tokens/s, ETA."""
    if not self.enabled:
      return
    eta = datetime.timedelta(seconds=int((self.total - step) / max(steps_per_s, 1e-9)))
    shown = " | ".join(f"{k} {metrics[k]:.4g}" for k in shown_keys if k in metrics)
    print(f"step {step}/{self.total} | {shown} | {metrics['tokens_per_s'] / 1e3:.1f}k tok/s "
          f"| ETA {eta}", flush=True)

  def eval_line(self, step, metrics):
    if self.enabled:
      print(f"eval at step {step} | " + " | ".join(f"{k[5:]} {v:.4g}" for k, v in metrics.items()),
            flush=True)

  def flush(self):
    """Makes every written line durable (a no-op locally, where each line is appended)."""
    if self.enabled and self.remote:
      paths.write_text(self.path, "".join(self.lines))
      self.flushed = time.monotonic()
    if self.tb is not None:
      self.tb.flush()

  def close(self):
    self.flush()
    if self.tb is not None:
      self.tb.close()


def _truncate_after(path, step):
  """Keeps the lines of steps <= `step` (rewriting the file) and returns them. A line
  that does not parse is dropped: a kill or a full disk during an append leaves a
  torn last line."""
  if not paths.exists(path):
    return []
  lines, bad = [], []
  text = paths.read_bytes(path).decode("utf-8", errors="replace")  # a torn line may end mid-character
  numbered = [(n, l) for n, l in enumerate(text.splitlines(keepends=True), 1) if l.strip()]
  for n, line in numbered:
    try:
      keep = json.loads(line)["step"] <= step
    except (ValueError, KeyError, TypeError):
      bad.append(n)
      continue
    if keep:
      lines.append(line if line.endswith("\n") else line + "\n")
  if bad and bad != [numbered[-1][0]]:  # more than a torn last line: say so
    print(f"Note: dropped {len(bad)} unreadable line(s) of {path} (the first is line {bad[0]}).",
          flush=True)
  paths.write_text(path, "".join(lines))
  return lines


class Stopwatch:
  """Wall time between log lines, for tokens/s."""

  def __init__(self):
    self.t = time.perf_counter()

  def lap(self):
    now = time.perf_counter()
    dt, self.t = now - self.t, now
    return dt
