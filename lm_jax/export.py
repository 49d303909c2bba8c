r"""Export a training run as a HuggingFace (PyTorch) model directory.

  python -m lm_jax.export --workdir=runs/tiny --out=exported/ [--step=N] [--dtype=bfloat16]

  # PyTorch side:
  #   AutoModelForPreTraining.from_pretrained("exported/")   (MLM + NSP heads)
  #   AutoTokenizer.from_pretrained("exported/")

OUT receives model.safetensors, config.json and the tokenizer files. Only
the parameters are read from the checkpoint (not the optimizer state), and
they are written one tensor at a time, so exporting needs about one copy
of the model in memory. Scanned and sharded checkpoints export the same.
"""
import os

from absl import app, flags, logging

from lm_jax import cli, interop, pretrained
from lm_jax.data import tokenizer as tokenizer_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run to export.")
_OUT = flags.DEFINE_string("out", None, "The HuggingFace directory to write.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", sorted(interop.DTYPES), "Weights' dtype in the file.")


def export(workdir, out, step=None, dtype="float32"):
  """Writes the run in `workdir` (checkpoint `step`, default latest) to `out`; returns the step."""
  config, _, params, step = pretrained.restore_params(workdir, step)
  tokenizer = tokenizer_lib.load(os.path.join(workdir, "tokenizer"))
  interop.save_pretrained(out, config.model, params, tokenizer, dtype)
  return step


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  for flag in (_WORKDIR, _OUT):
    if not flag.value:
      cli.fail(f"--{flag.name} is required: {flag.help[0].lower()}{flag.help[1:-1]}.")
  logging.set_verbosity(logging.WARNING)
  with cli.user_errors():
    step = export(_WORKDIR.value, _OUT.value, _STEP.value, _DTYPE.value)
  print(f"Exported step {step} of {_WORKDIR.value} to {_OUT.value}.", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
