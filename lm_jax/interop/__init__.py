"""HuggingFace import and export, for every model family.

interop/hf.py is the machinery; each family adds one module with its name
table and config mapping (bert.py) and one line in FAMILIES. Nothing here
needs torch: PyTorch-format files are written and read directly.
"""
import json
import os

import jax
import ml_collections
import ml_dtypes
import numpy as np

from lm_jax import config as config_lib, paths
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
    return "model_type" in json.loads(paths.read_text(paths.join(path, "config.json")))
  except (OSError, ValueError):
    return False


def _family(hf_config, path):
  model_type = hf_config.get("model_type")
  module = _BY_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None
  if module is None:
    names = hf_config.get("architectures")
    name = names[0] if isinstance(names, list) and names else model_type
    raise UserError(f"{path} holds a {name} model, which lm_jax cannot import; supported "
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
  that has it, else from the family's defaults. config.json is checked
  against the checkpoint's tensor headers (no data is read) and the
  tokenizer files against its vocabulary, so no model is ever built from
  sizes the weights do not have (see README: untrusted checkpoints).
  """
  hf_config = hf.read_config(hf_dir)
  family = _family(hf_config, hf_dir)
  model = family.model_section()
  if base is not None:
    model.update({k: v for k, v in base.items() if k in model and k != "family"})
  architecture = family.model_config(hf_config, hf_dir)
  _check_types(hf_dir, architecture, model)
  model.update(architecture)
  reader = hf.CheckpointReader(hf_dir)
  if base is not None and base.get("task"):  # a fine-tuning config keeps its task
    model.update(task=base.task, labels=base.labels)
  elif base is None:  # inference on a classifier: the directory's task and labels
    head_rows = lambda names: next(((reader.shape(n) or (None,))[0] for n in names
                                    if n in reader.names()), None)
    model.update(classifiers.task_keys(hf_config, hf_dir, head_rows))
  _check_sizes(hf_dir, reader, family, model)
  return model


# Attention heads split the width they name into equal parts.
_HEADS = dict(num_attention_heads="hidden_size", n_head="n_embd",
              generator_num_attention_heads="generator_hidden_size")


def _check_types(hf_dir, architecture, model):
  """Each size config.json gives is of the type the model section has."""
  for key, value in architecture.items():
    want = type(model[key])
    if want in (int, float, str, bool) and not (
        type(value) is want or (want is float and type(value) is int)):
      raise UserError(f"{hf_dir}/config.json has {key}={str(value)[:40]!r}, not the "
                      f"{want.__name__} lm_jax expects; use the config.json saved with the "
                      "weights.")
  for heads, width in _HEADS.items():
    if heads in architecture and (architecture[heads] <= 0 or
                                  architecture.get(width, model[width]) % architecture[heads]):
      raise UserError(f"{hf_dir}/config.json has {heads}={architecture[heads]}, which does not "
                      f"divide {width}; use the config.json saved with the weights.")


def _check_sizes(hf_dir, reader, family, model_cfg):
  """config.json's sizes against the tensor headers of each directory the
  model reads, then the tokenizer's ids against the vocabulary."""
  if hasattr(family, "parts") and not model_cfg.get("task"):
    for part in family.parts(model_cfg):
      part_dir = os.path.join(hf_dir, part.subdir)
      if not part.subdir:
        hf.check_config(hf_dir, reader, part.table, part.num_layers, part.shapes)
      elif os.path.isdir(part_dir):
        hf.check_config(part_dir, hf.CheckpointReader(part_dir), part.table, part.num_layers,
                        part.shapes)
  else:
    hf.check_config(hf_dir, reader, _table(family, model_cfg),
                    config_lib.size(model_cfg, "num_hidden_layers"), family.shapes(model_cfg))
  if hf_tokenizer.has_files(hf_dir):
    pieces = hf_tokenizer.vocab_size(hf_dir)
    if pieces > model_cfg.vocab_size:
      raise UserError(f"The tokenizer in {hf_dir} has {pieces} pieces but the checkpoint's "
                      f"embedding matrix only {model_cfg.vocab_size} rows; the tokenizer is not "
                      "the one of these weights.")


def with_hf_model(config, hf_dir):
  """A copy of `config` whose model is the one in `hf_dir` (config.init.from_hf's files)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model = model_config(hf_dir, config.model)
  return config


def load_params(hf_dir, model_cfg, template):
  """`template` with the weights of the HF model in `hf_dir`.

  `template` is either fresh parameters (initialised arrays, with the
  shardings to use) or abstract ones: a pytree of jax.ShapeDtypeStruct with
  a .sharding, which needs no initialisation. With arrays, tensors the
  checkpoint may lack (task heads, ELECTRA's generator/) keep their values
  and a note says so. With an abstract template every leaf comes from the
  checkpoint, placed with jax.device_put on its leaf's sharding; those
  tensors the checkpoint may lack become zeros (the note says so), and any
  other leaf it lacks is a UserError naming it.
  """
  family = _family_of_model(model_cfg)
  if hasattr(family, "parts") and not model_cfg.get("task"):
    params = _load_parts(hf_dir, family.parts(model_cfg), model_cfg, template)
  else:
    params, notes = hf.import_params(hf_dir, _table(family, model_cfg), template,
                                     config_lib.size(model_cfg, "num_hidden_layers"),
                                     model_cfg.scan_layers)
    for note in notes:
      print(note, flush=True)
  left = [path for path, x in jax.tree_util.tree_leaves_with_path(params) if hf.is_abstract(x)]
  if left:
    name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in left[0])
    raise UserError(f"{hf_dir} has no tensor for the parameter {name}, which this model needs; "
                    "is its config.json the one of these weights?")
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
      abstract = any(hf.is_abstract(x) for x in jax.tree.leaves(params))
      print(f"{hf_dir} has no {part.subdir}/ model; its parameters "
            + ("are zeros." if abstract else "keep their fresh initialisation."), flush=True)
      if abstract:
        params = hf.zero_abstract(params, part.table, part.num_layers, model_cfg.scan_layers)
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
