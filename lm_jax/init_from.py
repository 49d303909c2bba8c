"""Starting a run from another model: `init.from_hf` (an HF directory) or
`init.from_workdir` (an lm_jax pre-training run, for fine-tuning).

train.run calls two functions: `architecture(config)` before anything is
built (the model section comes from the source), and `weights(...)` on the
fresh parameters of a first start (the source's weights go in by name; what
the source lacks, e.g. a task head, keeps its initialisation).

An init.from_hf on gs:// is read from one local copy per process (safetensors
and HF tokenizers read local files); config.json keeps the gs:// name.
"""
import functools

import ml_collections

from lm_jax import families, interop, paths, workdir as workdir_lib
from lm_jax.errors import UserError
from lm_jax.models import classifiers

TASK_KEYS = ("task", "labels")  # the model keys a fine-tuning config adds to an encoder's


_hf_copy = functools.lru_cache(paths.local_copy)  # a pretrained model does not change under a run


def architecture(config):
  """`config` with the model section of its init source (unchanged without one)."""
  if config.init.from_hf:  # the architecture comes from its config.json
    return interop.with_hf_model(config, _hf_copy(config.init.from_hf))
  if config.init.get("from_workdir"):
    return with_pretrained_model(config)  # ... from the pre-training run's
  return config


def weights(config, params, mesh, rule_table):
  """Fresh `params` (sharded on `mesh`) with the weights of the init source, if any."""
  if config.init.from_hf:
    return interop.load_params(_hf_copy(config.init.from_hf), config.model, params)
  if config.init.get("from_workdir"):
    return load_encoder(config.init.from_workdir, params, mesh, rule_table)
  return params


def with_pretrained_model(config):
  """A copy of `config` whose model is init.from_workdir's encoder plus this
  config's task keys and runtime keys (dtype, dropout, ...)."""
  path = config.init.from_workdir
  encoder = workdir_lib.read_config(path).model
  if encoder.family not in classifiers.BASE_PREFIX:
    raise UserError(f"{path} holds a {encoder.family} model; fine-tuning heads exist for "
                    f"{', '.join(classifiers.BASE_PREFIX)}.")
  config = ml_collections.ConfigDict(config.to_dict())
  model = ml_collections.ConfigDict({k: v for k, v in encoder.to_dict().items()
                                     if k not in TASK_KEYS})
  model.update({k: config.model[k] for k in families.family(model).runtime_keys
                if k in config.model and k in model})
  model.update({k: config.model[k] for k in TASK_KEYS})
  config.model = model
  return config


def _copy_matching(target, source, where):
  """`target`'s tree with each leaf taken from the same path in `source`."""
  if not isinstance(target, dict):
    if target.shape != source.shape:
      raise UserError(f"The pre-trained {where} has shape {source.shape}, this model "
                      f"{target.shape}; fine-tune with the pre-training run's model sizes.")
    return source
  return {k: _copy_matching(v, source[k], f"{where}.{k}") for k, v in target.items()}


def load_encoder(workdir, params, mesh, rule_table):
  """`params` with the encoder of `workdir`'s latest checkpoint, restored
  directly into the shardings of `mesh`."""
  config, _, encoder_params, step = workdir_lib.restore_params(workdir, mesh=mesh,
                                                               rule_table=rule_table)
  prefix = classifiers.BASE_PREFIX[config.model.family]
  print(f"Fine-tuning the encoder of {workdir} (step {step}).", flush=True)
  return dict(params, **{prefix: _copy_matching(params[prefix], encoder_params[prefix], prefix)})
