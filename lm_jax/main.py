r"""Pre-train or fine-tune a model: flags only; the work is in seeds.run (train.run per seed).

  python -m lm_jax.main --config=configs/bert_base.py:tiny --workdir=runs/tiny \
      [--config.train.steps=100 ...]

On a TPU VM pod or under SLURM the same command runs on every host and the
processes find each other (JAX's cluster detection). Elsewhere, name them:

  python -m lm_jax.main ... --coordinator_address=HOST:PORT --num_processes=2 --process_id=0

(or the JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID variables);
launch/ has scripts for all three. With train.show_fill_mask=N (the demo
variant) a masked LM's run ends by filling in a masked word of N held-out
sentences (inference/cloze.py).
"""
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from lm_jax import cli, inference, parallel, paths, seeds, workdir as workdir_lib
from lm_jax.inference import cloze


def _env_int(name):
  value = os.environ.get(name)
  return int(value) if value and value.lstrip("-").isdigit() else None


_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, tokenizer).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "HOST:PORT of process 0, for a multi-process run outside TPU pods and SLURM.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", _env_int("JAX_NUM_PROCESSES"),
                                      "Number of processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", _env_int("JAX_PROCESS_ID"),
                                   "This process's index in [0, num_processes).")
_INIT_TIMEOUT = flags.DEFINE_float(
    "initialization_timeout", 300.0,
    "Seconds to wait for all processes to join before exiting with who is missing.")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  if not _WORKDIR.value:
    cli.fail("--workdir is required: the directory the run writes to (or resumes from).")
  logging.set_verbosity(logging.WARNING)  # keep Orbax/JAX chatter out of the progress
  with cli.user_errors():
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                    _INIT_TIMEOUT.value)
    config = _CONFIG.value
    cloze.check(config)  # before training, not after it
    seeds.run(config, _WORKDIR.value)
    count = config.train.get("show_fill_mask", 0)
    if count and jax.process_index() == 0:
      corpus = workdir_lib.corpus_dir(config, paths.absolute(_WORKDIR.value))
      print(cloze.report(inference.load(_WORKDIR.value), corpus, count), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, config_flag="config"))
