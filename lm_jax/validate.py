r"""Check a new install on a new system: every family trains, resumes and exports.

  python -m lm_jax.validate [--families=bert,gpt2,elmo] [--workdir=DIR] [--json=PATH] [--steps=16]

For each family it trains the tiny variant (configs/<file>.py:tiny as the
install ships it, made smaller still) on all local devices (mesh data=-1)
and checks three things:

  loss     the mean loss of the last 3 logged steps is below that of the first 3;
  resume   a run stopped at steps/2 and run again to `steps` in the same workdir
           logs bit-identical losses to the straight run from steps/2 + 1 on;
  export   the straight run exported (HF directory; ELMo: bilm-tf HDF5) and read
           back gives the outputs of the run's own checkpoint on a few sentences
           (lm_jax.load of both; ELMo: the HDF5 datasets put back into the
           parameters, then the embeddings), max abs difference <= 1e-4.

It prints one table, a row a family: the devices used; steps/s and tokens/s of
the straight run (median over its steps after the first, which compiles; tiny
shapes, so a smoke check, not a benchmark); the loss first -> last; "yes" when
the resumed losses are identical; "ok" and the export's max abs difference.
The same goes to --json (default WORKDIR/validate.json). Exit status 1 comes
with one sentence per failed check; 2 is a bad command line. Without --workdir
the runs go to a temporary directory, which keeps only validate.json once every
check has passed (all of it, with each run's log, when one has failed).
"""
import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
import traceback

import jax
import numpy as np
from absl import app, flags, logging

from lm_jax import cli, config as config_lib, export, families, inference, train
from lm_jax import workdir as workdir_lib
from lm_jax.inference import elmo as elmo_inference
from lm_jax.errors import UserError
from lm_jax.interop import elmo_hdf5

SENTENCES = ["Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years.",
             "She was the youngest of the two daughters."]
TOLERANCE = 1e-4
WINDOW = 3  # logged steps averaged at each end of the loss curve

_FAMILIES = flags.DEFINE_list("families", list(families.FAMILIES), "Families to check.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the runs go (default: a temporary directory).",
                                allow_override=True)  # lm_jax.export defines one too
_JSON = flags.DEFINE_string("json", None, "The results as JSON (default: WORKDIR/validate.json).")
_STEPS = flags.DEFINE_integer("steps", 16, "Training steps per family (even, at least 8).")


def family_config(family, steps, schedule, tokenizer=""):
  """configs/<file>.py:tiny made smaller, for `steps` of a `schedule`-step run on all
  local devices."""
  record = families.FAMILIES[family]
  path = cli.shipped_config(record.config_file + ".py")
  if path is None:
    raise UserError(f"lm_jax's {record.config_file}.py config is missing from this install "
                    f"(looked in {', '.join(cli.CONFIG_DIRS)}); reinstall lm_jax.")
  spec = importlib.util.spec_from_file_location(record.config_file, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("tiny")
  batch = -(-8 // jax.device_count()) * jax.device_count()  # >= 8, a multiple of the devices
  overrides = {"train.steps": steps, "train.schedule_steps": schedule, "train.batch_size": batch,
               "train.log_every": 1, "train.eval_every": 0, "train.warmup_steps": 2,
               "train.checkpoint_every": schedule // 2, "data.tokenizer": tokenizer,
               **record.validate_overrides}
  return config_lib.override(config, overrides)


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return {m["step"]: m for m in records if "loss" in m}


def train_quietly(config, workdir):
  """train.run with its progress lines in WORKDIR.log instead of the terminal."""
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  with open(workdir + ".log", "a") as log, contextlib.redirect_stdout(log):
    train.run(config, workdir)


def max_abs_diff(a, b):
  keys = [k for k, v in a.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
  if any(k not in b or b[k].shape != a[k].shape for k in keys):
    return float("inf")  # a missing output, or the export's tokenizer splits differently
  return max(float(np.abs(a[k] - b[k]).max()) for k in keys)


def check_hf_export(workdir, out):
  export.export(workdir, out)
  return max_abs_diff(inference.load(workdir)(SENTENCES), inference.load(out)(SENTENCES))


def check_elmo_export(workdir, out):
  """Puts every HDF5 dataset back where names() took it from (via a tree of element
  indices), then compares the embeddings; a parameter left out stays NaN."""
  import h5py  # pylint: disable=g-import-not-at-top
  export.export(workdir, out, format="elmo")
  config, ms, checkpoint, _ = workdir_lib.restore_params(workdir)
  leaves, treedef = jax.tree.flatten(jax.device_get(checkpoint))
  starts = np.cumsum([0] + [x.size for x in leaves])
  index = treedef.unflatten([np.arange(s, s + x.size).reshape(x.shape)
                             for s, x in zip(starts, leaves)])
  values = np.full(starts[-1], np.nan, np.float32)
  with h5py.File(os.path.join(out, elmo_hdf5.WEIGHTS_FILE), "r") as f:
    for name, get in elmo_hdf5.names(config.model):
      values[np.asarray(get(index)).ravel()] = f[name][...].ravel()
  params = treedef.unflatten([values[s:s + x.size].reshape(x.shape) for s, x in zip(starts, leaves)])
  params["softmax"] = checkpoint["softmax"]  # training only: not exported
  vocab = workdir_lib.run_tokenizer(config, workdir)
  ours, reread = (elmo_inference.Elmo(config, ms, p, vocab) for p in (checkpoint, params))
  return max_abs_diff(ours.embed(SENTENCES), reread.embed(SENTENCES))


EXPORT_CHECKS = {"hf": check_hf_export, "elmo": check_elmo_export}  # by the record's export_format


def validate(family, steps, workdir, tokenizer):
  """One family's row of the table, and its failures as sentences."""
  half = steps // 2
  straight, resumed = os.path.join(workdir, "straight"), os.path.join(workdir, "resumed")
  config = family_config(family, steps, steps, tokenizer)
  train_quietly(config, straight)
  tokenizer = tokenizer or os.path.join(straight, "tokenizer")  # the resumed run trains none
  train_quietly(family_config(family, half, steps, tokenizer), resumed)
  train_quietly(family_config(family, steps, steps, tokenizer), resumed)
  a, b = losses(straight), losses(resumed)
  curve = [a[s]["loss"] for s in sorted(a)]
  tokens_per_s = float(np.median([a[s]["tokens_per_s"] for s in sorted(a)[1:]]))
  check = EXPORT_CHECKS[families.FAMILIES[family].export_format]
  diff = check(straight, os.path.join(workdir, "export"))
  row = dict(family=family, devices=f"{jax.device_count()} {jax.devices()[0].platform}",
             steps_per_s=round(tokens_per_s / (config.train.batch_size * config.data.seq_len), 2),
             tokens_per_s=round(tokens_per_s), loss_first=round(float(np.mean(curve[:WINDOW])), 4),
             loss_last=round(float(np.mean(curve[-WINDOW:])), 4),
             resume_exact=sorted(a) == sorted(b) and all(a[s]["loss"] == b[s]["loss"]
                                                         for s in range(half + 1, steps + 1)),
             export_max_abs_diff=diff)
  failures = [f"{family}: {problem}" for ok, problem in (
      (row["loss_last"] < row["loss_first"], f"the loss did not fall ({row['loss_first']} -> "
                                             f"{row['loss_last']} in {steps} steps)."),
      (row["resume_exact"], f"the run resumed at step {half} did not log the straight run's "
                            f"losses for steps {half + 1}..{steps}."),
      (diff <= TOLERANCE, f"the export read back differs from the run by {diff:.3g} "
                          f"(max abs; tolerance {TOLERANCE})."))
      if not ok]
  return dict(row, passed=not failures), failures


def table(rows):
  """The rows as aligned text columns; '-' where a family failed before the check."""
  cells = [("family", "devices", "steps/s", "tokens/s", "loss first→last", "resume exact",
            "export check")]
  for r in rows:
    if "loss_first" not in r:
      cells.append((r["family"],) + ("-",) * 6)
      continue
    diff = r["export_max_abs_diff"]
    cells.append((r["family"], r["devices"], f"{r['steps_per_s']:.1f}", f"{r['tokens_per_s']:,}",
                   f"{r['loss_first']:.3f} → {r['loss_last']:.3f}",
                   "yes" if r["resume_exact"] else "no",
                   f"{'ok' if diff <= TOLERANCE else 'FAILED'} {diff:.1g}"))
  widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
  return "\n".join("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip() for c in cells)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  names = _FAMILIES.value
  unknown = [f for f in names if f not in families.FAMILIES] or ([] if names else [""])
  if unknown:
    cli.fail(f"Unknown family {unknown[0]!r} in --families; choose from "
             f"{','.join(families.FAMILIES)}.")
  if _STEPS.value < 8 or _STEPS.value % 2:
    cli.fail(f"--steps={_STEPS.value} is too few to check; give an even number of at least 8.")
  workdir = os.path.abspath(_WORKDIR.value or tempfile.mkdtemp(prefix="lm_jax_validate_"))
  used = [f for f in names if os.path.exists(os.path.join(workdir, f))]
  if used:  # never train on top of (or delete) an earlier run
    cli.fail(f"{os.path.join(workdir, used[0])} already exists; give a new or empty --workdir.")
  logging.set_verbosity(logging.WARNING)
  # The three runs of a family compile the same steps: compile them once.
  jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "compilation_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  print(f"Validating {', '.join(names)} on {jax.device_count()} {jax.devices()[0].platform} "
        f"device(s) with jax {jax.__version__}, in {workdir}", flush=True)
  rows, failures, tokenizer = [], [], ""
  for family in names:
    own_vocab = families.FAMILIES[family].vocab is not None  # not sentencepiece
    print(f"{family}: training {_STEPS.value} steps, resuming, exporting ...", flush=True)
    start = time.perf_counter()
    try:
      row, failed = validate(family, _STEPS.value, os.path.join(workdir, family),
                             "" if own_vocab else tokenizer)
    except Exception as e:  # pylint: disable=broad-except  # a broken install: report, go on
      if not isinstance(e, UserError):
        traceback.print_exc()
        e = f"{type(e).__name__}: {e}"
      row, failed = dict(family=family, passed=False), [f"{family}: the run failed ({e})."]
    shared = os.path.join(workdir, family, "straight", "tokenizer")
    if not own_vocab and not tokenizer and os.path.exists(shared):
      tokenizer = shared  # one sentencepiece model for the other families
    print(f"{family}: {'passed' if row['passed'] else 'FAILED'} in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    rows.append(row)
    failures += failed
  print("\n" + table(rows), flush=True)
  json_path = os.path.abspath(_JSON.value or os.path.join(workdir, "validate.json"))
  os.makedirs(os.path.dirname(json_path), exist_ok=True)
  with open(json_path, "w") as f:
    json.dump(dict(jax=jax.__version__, steps=_STEPS.value, passed=not failures, rows=rows,
                   failures=failures), f, indent=2)
  for failure in failures:
    print(f"FAILED: {failure}", flush=True)
  if failures:
    print(f"The runs and their logs are in {workdir}.", flush=True)
    raise SystemExit(1)
  if not _WORKDIR.value:  # the temporary directory goes, but for validate.json
    for name in os.listdir(workdir):
      if os.path.isdir(os.path.join(workdir, name)):
        shutil.rmtree(os.path.join(workdir, name))
    if not os.listdir(workdir):
      os.rmdir(workdir)
  print(f"All checks passed; the table is also in {json_path}.", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
