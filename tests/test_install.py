"""lm_jax from a non-editable install, outside the checkout: the config files
ship inside the package, `--config=bert_base.py:tiny` finds them, and
`python -m lm_jax.validate` passes in an empty directory.

Slow: the install takes ~10 s and validate's BERT run (train 8 steps, resume,
export) ~2 minutes on 2 busy cores; the venv's dependencies are reused
(--no-deps), so nothing is downloaded.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

SOURCES = ("setup.py", "MANIFEST.in", "README.md", "configs", "lm_jax")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """lm_jax pip-installed (not editable) into a directory of its own, from a copy
  of the source tree (a build in the checkout would leave build/ there)."""
  source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("site")
  for name in SOURCES:
    path = os.path.join(REPO, name)
    if os.path.isdir(path):
      shutil.copytree(path, source / name,
                      ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
      shutil.copy(path, source / name)
  result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                           "--no-build-isolation", "--no-index", "--quiet", "--target",
                           str(target), str(source)], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return str(target)


def run_outside(installed, cwd, *args):
  """`python -m ...` in `cwd` with only the installed lm_jax on the path."""
  env = dict(os.environ, PYTHONPATH=installed)
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=900)


def test_configs_ship_inside_the_package(installed, tmp_path):
  shipped = sorted(os.listdir(os.path.join(installed, "lm_jax", "configs")))
  assert {"bert_base.py", "gpt2.py", "elmo.py"} <= set(shipped)
  found = run_outside(installed, tmp_path, "-c", "from lm_jax import cli; "
                      "print(cli.config_path('bert_base.py')); print(cli.config_path("
                      "'configs/gpt2.py'))")
  assert found.returncode == 0, found.stderr[-2000:]
  assert found.stdout.split() == [os.path.join(installed, "lm_jax", "configs", name)
                                  for name in ("bert_base.py", "gpt2.py")]
  # The command line reads it: an unknown variant is that file's own sentence.
  bad = run_outside(installed, tmp_path, "-m", "lm_jax.main", "--config=bert_base.py:huge",
                    f"--workdir={tmp_path / 'run'}")
  assert bad.returncode == 2 and "unknown variant 'huge'" in bad.stderr, bad.stderr[-2000:]


def test_validate_passes_in_an_empty_directory(installed, tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  result = run_outside(installed, empty, "-m", "lm_jax.validate", "--families=bert", "--steps=8")
  assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
  assert "All checks passed" in result.stdout
  assert os.listdir(empty) == []  # its runs went to a temporary directory
