"""Shared command-line plumbing: one-sentence errors instead of tracebacks."""
import contextlib
import importlib.util
import os
import sys

from absl import flags

from lm_jax.errors import UserError

# The config files lm_jax ships: configs/ of the checkout is their source;
# an installed (non-editable) package holds a copy in lm_jax/configs/ (setup.py).
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
CONFIG_DIRS = (os.path.join(_PACKAGE, "configs"),
               os.path.join(os.path.dirname(_PACKAGE), "configs"))


def fail(message):
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


@contextlib.contextmanager
def user_errors():
  """Turns a UserError into its sentence on stderr and exit status 2."""
  try:
    yield
  except UserError as e:
    fail(str(e))


def shipped_configs():
  """The names of the config files lm_jax ships (bert_base.py, gpt2.py, ...)."""
  for directory in CONFIG_DIRS:
    if os.path.isdir(directory):
      return sorted(n for n in os.listdir(directory) if n.endswith(".py") and n[0] != "_")
  return []


def shipped_config(name):
  """The path of the shipped config file `name` (e.g. "bert_base.py"), or None."""
  for directory in CONFIG_DIRS:
    if os.path.isfile(os.path.join(directory, name)):
      return os.path.join(directory, name)
  return None


def config_path(path):
  """The file a --config path means: the path itself when it exists, else the
  shipped config of that name when it is written as a bare name or as
  configs/NAME (the README's spelling, outside a checkout)."""
  if os.path.exists(path):
    return path
  head, name = os.path.split(path)
  if os.path.normpath(head) in (".", "configs") or not head:
    return shipped_config(name) or path
  return path


def _resolve_config(argv, config_flag):
  """argv with the file of --config=FILE[:VARIANT] (or --config FILE...) resolved."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{config_flag}="):
      path, colon, variant = arg.split("=", 1)[1].partition(":")
      argv[i] = f"--{config_flag}={config_path(path)}{colon}{variant}"
    elif arg == f"--{config_flag}" and i + 1 < len(argv):
      path, colon, variant = argv[i + 1].partition(":")
      argv[i + 1] = f"{config_path(path)}{colon}{variant}"
  return argv


def _config_spec(argv, config_flag):
  """The FILE[:VARIANT] given as --config=SPEC or --config SPEC, or None."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{config_flag}="):
      return arg.split("=", 1)[1]
    if arg == f"--{config_flag}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _config_file_problem(argv, config_flag):
  """Explains what is wrong with --config / --config.KEY=VALUE, or None."""
  spec = _config_spec(argv, config_flag)
  if spec is None:
    return f"--{config_flag} is required, e.g. --{config_flag}=configs/bert_base.py:tiny."
  path, _, variant = spec.partition(":")
  if os.path.isdir(path):
    return (f"{path} is a directory; give a config file, e.g. "
            f"--{config_flag}={path}/bert_base.py:tiny.")
  if not os.path.exists(path):
    shipped = ", ".join(shipped_configs()) or "no configs"
    return (f"Config file {path} does not exist; check --{config_flag} (lm_jax ships "
            f"{shipped}, e.g. --{config_flag}=bert_base.py:tiny).")
  module_spec = importlib.util.spec_from_file_location("_lm_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
  except ValueError as e:  # configs/*.py: an unknown variant, with the valid ones
    return f"{spec}: {e}."
  except Exception as e:  # the config file's own error
    return f"{spec} could not be loaded ({type(e).__name__}: {e}); fix the file or the variant."
  for arg in argv:
    if not arg.startswith(f"--{config_flag}."):
      continue
    key = arg[len(config_flag) + 3:].split("=", 1)[0]
    node = config
    for part in key.split("."):
      if not hasattr(node, "keys") or part not in node.keys():
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else ""
        return f"Unknown config key {key!r}; valid keys here are: {known}."
      node = node[part]
  return None


def _config_loaded(config_flag):
  """Whether --config gave a config: ml_collections parses a missing file into a
  placeholder that raises only when the config is first used."""
  try:
    flags.FLAGS[config_flag].value.keys()
    return True
  except Exception:  # None (no --config), or that placeholder
    return False


def parse_flags(argv, config_flag=None):
  """absl's flag parsing, with config mistakes as one sentence and exit 2.

  `config_flag`: the name of a required config-file flag (ml_collections),
  whose file may be one lm_jax ships (see config_path).
  """
  if config_flag:
    argv = _resolve_config(argv, config_flag)
  problem = lambda: _config_file_problem(argv[1:], config_flag) if config_flag else None
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:  # the config file's own error comes as one too, with a traceback
    fail(problem() or f"{e}.")
  except Exception:  # ml_collections raises plain errors for bad config overrides
    fail(problem() or "Could not parse the command line; check the --config overrides.")
  if config_flag and not _config_loaded(config_flag):
    fail(problem() or f"--{config_flag} could not be loaded; check it.")
  return rest
