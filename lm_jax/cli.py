"""Shared command-line plumbing: one-sentence errors instead of tracebacks."""
import contextlib
import importlib.util
import os
import sys

from absl import flags

from lm_jax.errors import UserError


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
    return f"Config file {path} does not exist; check --{config_flag}."
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

  `config_flag`: the name of a required config-file flag (ml_collections).
  """
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
