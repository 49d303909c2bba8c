"""Fine-tuning tasks (model.task): a BERT-family encoder under a task head.

A task run reads labelled records (data/labelled.py), is scored by the
task's metrics over the whole evaluation set, and loads as a Classifier.
"""
from lm_jax import config as config_lib, evaluation
from lm_jax.data import labelled
from lm_jax.families import base
from lm_jax.models import classifiers
from lm_jax.objectives import losses


def check(c):
  """The checks of a fine-tuning config (the encoder family's come after)."""
  m, d, i = c.model, c.data, c.init
  config_lib.check(m.family in classifiers.BASE_PREFIX,
             f"Fine-tuning heads exist for {', '.join(classifiers.BASE_PREFIX)}, not "
             f"model.family={m.family!r}.")
  config_lib.check(len(m.labels) >= (2 if m.task == classifiers.TOKEN else 1),
             "model.labels must name the classes (one name = regression; token tasks need two "
             "or more).")
  keys = [k for k in d.text_keys.split(",") if k.strip()]
  config_lib.check(1 <= len(keys) <= (1 if m.task == classifiers.TOKEN else 2),
             f"data.text_keys={d.text_keys!r} must name one text column (or two, comma-separated, "
             "for sentence pairs).")
  config_lib.check(d.long_document in config_lib.LONG_DOCUMENT,
             f"data.long_document={d.long_document!r} is not one of {config_lib.LONG_DOCUMENT}.")
  config_lib.check(d.long_document == "truncate" or (len(keys) == 1 and m.task == classifiers.SEQUENCE),
             f"data.long_document={d.long_document!r} applies to single texts of sequence tasks; "
             "use truncate for sentence pairs and token tasks.")
  config_lib.check(c.train.seeds >= 1, f"train.seeds={c.train.seeds} must be at least 1.")
  config_lib.check(not (i.from_hf and i.from_workdir),
             "Set only one of init.from_hf and init.from_workdir.")
  config_lib.check(bool(i.from_hf or i.from_workdir or d.tokenizer),
             "Fine-tuning needs a tokenizer: set init.from_workdir or init.from_hf, or data.tokenizer "
             "to train from a random initialisation.")


def _task(examples):
  return base.Family(
      name="", model=classifiers.Classifier, loss=losses.classification, examples=examples,
      read=labelled.records, evaluator=evaluation.TaskMetrics, inference="classifier",
      check=check, progress_metrics=("loss", "accuracy"), labelled=True)


TASKS = {classifiers.SEQUENCE: _task(labelled.SequenceExamples),
         classifiers.TOKEN: _task(labelled.TokenExamples)}
