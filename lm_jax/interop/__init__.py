"""HuggingFace import and export, for every model family.

interop/hf.py is the machinery; each family adds one module with its name
table and config mapping (bert.py) and one line in FAMILIES. Nothing here
needs torch: PyTorch-format files are written and read directly.
"""
import json
import os

import ml_collections
import ml_dtypes
import numpy as np

from lm_jax import config as config_lib
from lm_jax.data import hf_tokenizer
from lm_jax.errors import UserError
from lm_jax.interop import bert, gpt2, hf
from lm_jax.interop import albert, classifiers, electra, roberta

FAMILIES = {module.FAMILY: module for module in (bert, albert, electra, roberta, gpt2)}
_BY_MODEL_TYPE = {module.MODEL_TYPE: module for module in FAMILIES.values()}
DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}


def is_hf_dir(path):
  """Whether `path` is an HF model directory (its config.json names a model_type)."""
  try:
    with open(os.path.join(path, "config.json")) as f:
      return "model_type" in json.load(f)
  except (OSError, ValueError):
    return False


def _family(hf_config, path):
  module = _BY_MODEL_TYPE.get(hf_config.get("model_type"))
  if module is None:
    names = hf_config.get("architectures") or [hf_config.get("model_type")]
    raise UserError(f"{path} holds a {names[0]} model, which lm_jax cannot import; supported "
                    f"model types: {', '.join(sorted(_BY_MODEL_TYPE))}.")
  return module


def _family_of_model(model_cfg):
  module = FAMILIES.get(model_cfg.family)
  if module is None:
    raise UserError(f"lm_jax has no HuggingFace name table for model.family={model_cfg.family!r} "
                    f"yet; families with one: {', '.join(sorted(FAMILIES))}.")
  return module


def model_config(hf_dir, base=None):
  """Our `model` section for the HF model in `hf_dir`.

  The architecture comes from its config.json; every other key (dtype,
  dropout, scan_layers, ...) from `base`, the run's model section, where
  that has it, else from the family's defaults.
  """
  hf_config = hf.read_config(hf_dir)
  family = _family(hf_config, hf_dir)
  model = family.model_section()
  if base is not None:
    model.update({k: v for k, v in base.items() if k in model and k != "family"})
  model.update(family.model_config(hf_config, hf_dir))
  if base is not None and base.get("task"):  # a fine-tuning config keeps its task
    model.update(task=base.task, labels=base.labels)
  elif base is None:  # inference on a classifier: the directory's task and labels
    model.update(classifiers.task_keys(hf_config))
  return model


def with_hf_model(config):
  """A copy of `config` whose model is the one in `config.init.from_hf`."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model = model_config(config.init.from_hf, config.model)
  return config


def load_params(hf_dir, model_cfg, init_params):
  """`init_params` (fresh, sharded) with the weights of the HF model in `hf_dir`."""
  family = _family_of_model(model_cfg)
  if hasattr(family, "parts") and not model_cfg.get("task"):
    return _load_parts(hf_dir, family.parts(model_cfg), model_cfg, init_params)
  params, notes = hf.import_params(hf_dir, _table(family, model_cfg), init_params,
                                   config_lib.size(model_cfg, "num_hidden_layers"),
                                   model_cfg.scan_layers)
  for note in notes:
    print(note, flush=True)
  return params


def _table(family, model_cfg):
  """The name table of a single-directory model: a classifier's, else the family's."""
  return classifiers.table(model_cfg) if model_cfg.get("task") else family.TABLE


def save_pretrained(out_dir, model_cfg, params, tokenizer, dtype="float32"):
  """Writes an HF directory: model.safetensors, config.json, tokenizer files."""
  if dtype not in DTYPES:
    raise UserError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}.")
  family = _family_of_model(model_cfg)
  task = model_cfg.get("task")
  if hasattr(family, "parts") and not task:
    return _save_parts(out_dir, family.parts(model_cfg), model_cfg, params, tokenizer, dtype)
  os.makedirs(out_dir, exist_ok=True)
  hf.export_params(os.path.join(out_dir, hf.SAFETENSORS_FILE), _table(family, model_cfg), params,
                   config_lib.size(model_cfg, "num_hidden_layers"), model_cfg.scan_layers,
                   DTYPES[dtype])
  hf_config = (classifiers.hf_config if task else family.hf_config)(model_cfg, tokenizer, dtype)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  if hasattr(family, "save_tokenizer"):  # a family with its own special-token layout (gpt2)
    family.save_tokenizer(tokenizer, out_dir, model_cfg)
  else:
    hf_tokenizer.save(tokenizer, out_dir, model_cfg.max_position_embeddings)


# A family whose HF form is several directories (ELECTRA: discriminator and
# generator) lists them as hf.Part's from `parts(model_cfg)`; the first is
# the directory itself, the others are optional subdirectories on import.

def _load_parts(hf_dir, parts, model_cfg, params):
  for part in parts:
    part_dir = os.path.join(hf_dir, part.subdir)
    if part.subdir and not os.path.isdir(part_dir):
      print(f"{hf_dir} has no {part.subdir}/ model; its parameters keep their fresh "
            "initialisation.", flush=True)
      continue
    params, notes = hf.import_params(part_dir, part.table, params, part.num_layers,
                                     model_cfg.scan_layers)
    for note in notes:
      print(note, flush=True)
  return params


def _save_parts(out_dir, parts, model_cfg, params, tokenizer, dtype):
  for part in parts:
    part_dir = os.path.join(out_dir, part.subdir)
    os.makedirs(part_dir, exist_ok=True)
    hf.export_params(os.path.join(part_dir, hf.SAFETENSORS_FILE), part.table, params,
                     part.num_layers, model_cfg.scan_layers, DTYPES[dtype])
    with open(os.path.join(part_dir, "config.json"), "w") as f:
      json.dump(part.hf_config(model_cfg, tokenizer, dtype), f, indent=2, sort_keys=True)
    hf_tokenizer.save(tokenizer, part_dir, model_cfg.max_position_embeddings)
