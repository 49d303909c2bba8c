r"""Prepare a corpus once, for any number of runs: flags only; the work is in data/prepare.py.

  python -m lm_jax.prepare --config=configs/bert_base.py --out=DIR \
      [--config.data.files=GLOB | --config.data.tfds_name=NAME] [--config.data.tokenizer=DIR] \
      [--workers=N] [--task=I/N] [--runner=beam --beam_options='--runner=DataflowRunner ...']

With neither source it prepares the embedded corpus, as lm_jax.main does.
Without data.tokenizer it trains one on a sample of the text. The output
(local or gs://) holds the tokenized documents and the examples of the
config's family for its data.seq_len (for each length of train.phases); training reads it with
`--config.data.prepared=DIR`. Another seq_len or family on the same DIR
reuses the documents and adds its examples.

`--workers` processes tokenize the shards in parallel; `--task=I/N` on N
hosts splits the shards between them (task 0 writes the tokenizer first;
the task finishing last writes the manifests). A rerun skips what is done,
so a killed prepare resumes; the output does not depend on either flag.

`--runner=beam` (pip install 'lm_jax[beam]') runs the shards as one Apache
Beam pipeline, `--beam_options` its pipeline flags as Beam spells them
(default: Beam's DirectRunner, on this machine), e.g. on Dataflow:

  --runner=beam --out=gs://BUCKET/corpus --beam_options='--runner=DataflowRunner
      --project=P --region=R --temp_location=gs://BUCKET/tmp --setup_file=./setup.py'

This process plans, writes the tokenizer, waits for the pipeline and writes
the manifests; the output is byte-identical to the local runner's.
"""
import os
import shlex

from absl import app, flags, logging
from ml_collections import config_flags

from lm_jax import cli, config as config_lib, families
from lm_jax.data import prepare
from lm_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                          lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Directory of the prepared corpus (local or gs://).")
_WORKERS = flags.DEFINE_integer("workers", os.cpu_count() or 1,
                                "Processes tokenizing shards in parallel (default: all cores).")
_TASK = flags.DEFINE_string("task", "0/1", "I/N: this host does shards k with k % N == I.")
_RUNNER = flags.DEFINE_enum("runner", "local", ["local", "beam"],
                            "local: --workers processes here; beam: an Apache Beam pipeline.")
_BEAM_OPTIONS = flags.DEFINE_string("beam_options", "", "With --runner=beam: Beam pipeline "
                                    "flags, e.g. '--runner=DataflowRunner --project=P ...'.")


def parse_task(text):
  """'I/N' -> (I, N); one UserError when it is not that."""
  i, _, n = text.partition("/")
  if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
    raise UserError(f"--task={text} is not I/N with 0 <= I < N, e.g. --task=0/4.")
  return int(i), int(n)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  if not _OUT.value:
    cli.fail("--out is required: the directory the prepared corpus goes to.")
  if _WORKERS.value < 1:
    cli.fail(f"--workers={_WORKERS.value} must be at least 1.")
  if _BEAM_OPTIONS.value and _RUNNER.value != "beam":
    cli.fail("--beam_options needs --runner=beam.")
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  with cli.user_errors():
    task = parse_task(_TASK.value)
    if _RUNNER.value == "beam" and task != (0, 1):
      raise UserError(f"--runner=beam runs every shard itself; drop --task={_TASK.value}.")
    families.validate(config)
    if families.get(config.model).labelled:
      raise UserError("lm_jax.prepare prepares pre-training corpora; a fine-tuning run reads its "
                      "labelled data itself.")
    examples = families.family(config.model).examples
    # No JAX computation has run in this process, so workers may be forked (fast).
    beam_options = shlex.split(_BEAM_OPTIONS.value) if _RUNNER.value == "beam" else None
    for phase in config_lib.phases(config):  # train.phases: the material of every length
      prepare.prepare(phase.config, _OUT.value, examples, workers=_WORKERS.value, task=task,
                      tokenizer=config.data.tokenizer or config.init.get("from_hf", ""),
                      start_method="fork", beam_options=beam_options)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, config_flag="config"))
