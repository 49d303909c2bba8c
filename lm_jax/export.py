r"""Export a training run as a HuggingFace (PyTorch) model directory, or an ELMo.

  python -m lm_jax.export --workdir=runs/tiny --out=exported/ [--step=N] [--dtype=bfloat16]
  python -m lm_jax.export --workdir=runs/elmo_tiny --format=elmo --out=elmo/

  # PyTorch side:
  #   AutoModelForPreTraining.from_pretrained("exported/")   (MLM + NSP heads)
  #   AutoTokenizer.from_pretrained("exported/")

OUT receives model.safetensors, config.json and the tokenizer files. Only
the parameters are read from the checkpoint (not the optimizer state), and
they are written one tensor at a time, so exporting needs about one copy
of the model in memory. Scanned and sharded checkpoints export the same.

--format=elmo writes bilm-tf's weights.hdf5, options.json and vocab.txt,
which LTG's simple_elmo and AllenNLP's Elmo load (interop/elmo_hdf5.py).

OUT must be new or empty, or --overwrite given; a training run's own
directory is never written over. The files are written into a temporary
sibling of OUT and moved into place when complete, so an interrupted export
leaves no half-written directory (with --overwrite, the old OUT is replaced
only then). OUT may be gs://: the files are written locally, then uploaded
with config.json last.
"""
import os
import shutil
import tempfile
import uuid

from absl import app, flags, logging

from lm_jax import cli, families, interop, paths, workdir as workdir_lib
from lm_jax.errors import UserError
from lm_jax.interop import elmo_hdf5

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run to export.")
_OUT = flags.DEFINE_string("out", None, "The directory to write.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", sorted(interop.DTYPES), "Weights' dtype in the file.")
FORMATS = {"hf": "a HuggingFace model", "elmo": "bilm-tf's HDF5"}  # the family record's export_format

_FORMAT = flags.DEFINE_enum("format", "hf", list(FORMATS),
                            "hf: a HuggingFace directory; elmo: bilm-tf's HDF5 (ELMo runs).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty --out directory.")


def _is_run(path):
  return paths.exists(paths.join(path, "config.json")) and paths.isdir(
      paths.join(path, "checkpoints"))


def check_out(workdir, out, overwrite=False):
  """Refuses an `out` whose contents the export would destroy (a run never, others
  unless `overwrite`)."""
  out, workdir = paths.absolute(out), paths.absolute(workdir)
  if paths.exists(out) and not paths.isdir(out):
    raise UserError(f"--out={out} is a file; give a directory to export into.")
  if _is_run(out):
    raise UserError(f"--out={out} is a training run (config.json, checkpoints/); export into "
                    "another directory.")
  if out == workdir:
    raise UserError(f"--out={out} is the --workdir itself; export into another directory.")
  if workdir.startswith(out.rstrip("/") + "/"):
    raise UserError(f"--out={out} holds the training run {workdir}; export into another "
                    "directory.")
  held = paths.listdir(out)
  if held and not overwrite:
    shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
    raise UserError(f"--out={out} is not empty (it holds {shown}); give a new or empty "
                    "directory, or add --overwrite to replace it.")


def _sibling(path, kind):
  """A fresh hidden name next to `path`: a rename between them stays on one file system."""
  return os.path.join(os.path.dirname(path),
                      f".{os.path.basename(path)}.{kind}-{uuid.uuid4().hex[:8]}")


def _move_into_place(tmp, out):
  """Renames the finished `tmp` to `out`; an old `out` is removed only after that."""
  old = None
  if os.path.isdir(out):
    old = _sibling(out, "old")
    os.rename(out, old)
  try:
    os.rename(tmp, out)
  except BaseException:
    if old:  # put the old one back
      os.rename(old, out)
    raise
  if old:
    shutil.rmtree(old)


def export(workdir, out, step=None, dtype="float32", format="hf", *,  # pylint: disable=redefined-builtin
           overwrite=False):
  """Writes the run in `workdir` (checkpoint `step`, default latest) to directory `out`;
  returns the step. `out` must be new or empty unless `overwrite`."""
  check_out(workdir, out, overwrite)
  config, _, params, step = workdir_lib.restore_params(workdir, step)
  own_format = families.get(config.model).export_format
  if format != own_format:
    raise UserError(f"A model.family={config.model.family} run exports as {FORMATS[own_format]}, "
                    f"not as {FORMATS[format]}; add --format={own_format}.")
  tokenizer = workdir_lib.run_tokenizer(config, workdir)
  out = paths.absolute(out)
  remote = paths.is_remote(out)
  if not remote:
    os.makedirs(os.path.dirname(out), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix="lm_jax_export_") if remote else _sibling(out, "tmp")
  os.makedirs(tmp, exist_ok=True)
  try:
    if format == "elmo":
      elmo_hdf5.save(tmp, config, params, tokenizer)
    else:
      interop.save_pretrained(tmp, config.model, params, tokenizer, dtype)
    (_upload if remote else _move_into_place)(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)  # gone already unless the export failed
  return step


def _upload(tmp, out):
  """gs:// has no rename: uploads every file, config.json last (no reader takes a
  directory without it for a model), then removes what an older export left."""
  names = sorted(os.listdir(tmp), key=lambda n: n == "config.json")
  old = set(paths.listdir(out))
  for name in names:
    source = os.path.join(tmp, name)
    (paths.copytree if os.path.isdir(source) else paths.copy_file)(source, paths.join(out, name))
  for name in sorted(old - set(names)):
    target = paths.join(out, name)
    (paths.rmtree if paths.isdir(target) else paths.remove)(target)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  if not _WORKDIR.value or not _OUT.value:
    cli.fail("--workdir (the training run) and --out (the HF directory to write) are both required.")
  logging.set_verbosity(logging.WARNING)
  with cli.user_errors():
    step = export(_WORKDIR.value, _OUT.value, _STEP.value, _DTYPE.value, _FORMAT.value,
                  overwrite=_OVERWRITE.value)
  print(f"Exported step {step} of {_WORKDIR.value} to {_OUT.value}.", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
