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


def _config_file_problem(argv, config_flag):
  """Explains what is wrong with --config / --config.KEY=VALUE, or None."""
  prefix = f"--{config_flag}="
  spec = next((a[len(prefix):] for a in argv if a.startswith(prefix)), None)
  if spec is None:
    return f"--{config_flag} is required, e.g. --{config_flag}=configs/bert_base.py:tiny."
  path, _, variant = spec.partition(":")
  if not os.path.exists(path):
    return f"Config file {path} does not exist; check --{config_flag}."
  module_spec = importlib.util.spec_from_file_location("_lm_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
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


def parse_flags(argv, config_flag=None):
  """absl's flag parsing, with config mistakes as one sentence and exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e}.")
  except Exception:  # ml_collections raises plain errors for bad config overrides
    problem = _config_file_problem(argv[1:], config_flag) if config_flag else None
    fail(problem or "Could not parse the command line; check the --config overrides.")
