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
"""
from absl import app, flags, logging

from lm_jax import cli, interop, pretrained
from lm_jax.errors import UserError
from lm_jax.interop import elmo_hdf5

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run to export.")
_OUT = flags.DEFINE_string("out", None, "The directory to write.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", sorted(interop.DTYPES), "Weights' dtype in the file.")
_FORMAT = flags.DEFINE_enum("format", "hf", ["hf", "elmo"],
                            "hf: a HuggingFace directory; elmo: bilm-tf's HDF5 (ELMo runs).")


def export(workdir, out, step=None, dtype="float32", format="hf"):  # pylint: disable=redefined-builtin
  """Writes the run in `workdir` (checkpoint `step`, default latest) to `out`; returns the step."""
  config, _, params, step = pretrained.restore_params(workdir, step)
  tokenizer = pretrained.run_tokenizer(config, workdir)
  if format == "elmo":
    elmo_hdf5.save(out, config, params, tokenizer)
  elif config.model.family == "elmo":
    raise UserError("An ELMo run exports as bilm-tf's HDF5, not as a HuggingFace model; "
                    "add --format=elmo.")
  else:
    interop.save_pretrained(out, config.model, params, tokenizer, dtype)
  return step


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  if not _WORKDIR.value or not _OUT.value:
    cli.fail("--workdir (the training run) and --out (the HF directory to write) are both required.")
  logging.set_verbosity(logging.WARNING)
  with cli.user_errors():
    step = export(_WORKDIR.value, _OUT.value, _STEP.value, _DTYPE.value, _FORMAT.value)
  print(f"Exported step {step} of {_WORKDIR.value} to {_OUT.value}.", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
