"""The registry: one Family record (families/base.py) per `model.family`,
and one per fine-tuning `model.task` (families/tasks.py).

The training loop, inference, export, validate and bench know a family only
through its record. A new family brings its model (models/), loss
(objectives/), examples (data/), config file (configs/), the record
(families/<name>.py, listed below), and its HF name table (interop/) —
WORKSPACE.md has the checklist.
"""
from lm_jax import config as config_lib
from lm_jax.errors import UserError
from lm_jax.families import albert, bert, electra, elmo, gpt2, roberta, tasks

FAMILIES = {module.FAMILY.name: module.FAMILY
            for module in (bert, roberta, albert, electra, gpt2, elmo)}
TASKS = tasks.TASKS


def family(model_cfg):
  """The pre-training family of a `model` section (a fine-tuning task's encoder family)."""
  if model_cfg.get("family") not in FAMILIES:
    raise UserError(f"model.family={model_cfg.get('family')!r} is not one of {sorted(FAMILIES)}; "
                    "fix the config's model section.")
  return FAMILIES[model_cfg.family]


def get(model_cfg):
  """The record of the model a `model` config section describes: a pre-training
  family, or a fine-tuning task (model.task) on one."""
  if model_cfg.get("task"):
    if model_cfg.task not in TASKS:
      raise UserError(f"model.task={model_cfg.task!r} is not one of {sorted(TASKS)}.")
    return TASKS[model_cfg.task]
  return family(model_cfg)


def build_model(model_cfg, *, rngs):
  """The model the `model` config section describes."""
  return get(model_cfg).model(model_cfg, rngs=rngs)


def validate(config):
  """Raises UserError for the first impossible value: the shared keys, a
  fine-tuning task's, then the family's own."""
  config_lib.validate(config)
  record, own = get(config.model), family(config.model)
  if record is not own:  # a fine-tuning task on the family's encoder
    record.check(config)
  own.check(config)

