r"""Pre-train a model: flags only; the work is in train.run.

  python -m lm_jax.main --config=configs/bert_base.py:tiny --workdir=runs/tiny \
      [--config.train.steps=100 ...]
"""
from absl import app, flags, logging
from ml_collections import config_flags

from lm_jax import cli, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, tokenizer).")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  if not _WORKDIR.value:
    cli.fail("--workdir is required: the directory the run writes to (or resumes from).")
  logging.set_verbosity(logging.WARNING)  # keep Orbax/JAX chatter out of the progress
  with cli.user_errors():
    train.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, config_flag="config"))
