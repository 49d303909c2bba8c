"""lm_jax.prepare --runner=beam: Beam's DirectRunner writes the same bytes as the local runner.

Beam pins protobuf<7 and pyarrow<26, so it runs in a venv of its own, made
here: a .pth file puts the main venv's packages (jax, sentencepiece,
array_record, ...) on its path, and only apache-beam and its pins are
installed into it; its own site-packages comes first on sys.path, so those
pins shadow the main venv's versions (~30 s with pip's cache, ~1 minute
without).
"""
import importlib.util
import os
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO, TINY_FLAGS, cli_args, tiny_config, tree
from lm_jax import bench_prepare, families
from lm_jax.data import prepare
from lm_jax.errors import UserError

SHARD_MB = 0.25


@pytest.fixture(scope="module")
def beam_python(tmp_path_factory):
  """The python of a venv holding apache-beam on top of the main venv's packages."""
  venv = tmp_path_factory.mktemp("beam_venv")
  base = getattr(sys, "_base_executable", sys.executable)
  subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
  python = str(venv / "bin" / "python")
  site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        check=True, capture_output=True, text=True).stdout.strip()
  with open(os.path.join(site, "lm_jax_main_venv.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  r = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      "apache-beam"], capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  # Beam's pins shadow the main venv's versions; the main venv's other packages are seen.
  r = subprocess.run([python, "-c", "import google.protobuf, pyarrow, sentencepiece; "
                      "print(google.protobuf.__version__, pyarrow.__version__)"],
                     capture_output=True, text=True, check=True)
  protobuf, pyarrow = (int(v.split(".")[0]) for v in r.stdout.split())
  assert protobuf < 7 and pyarrow < 26
  return python


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  d = tmp_path_factory.mktemp("beam_corpus")
  bench_prepare.write_corpus(d / "train.txt", 1.0)
  bench_prepare.write_corpus(d / "held_out.txt", 0.1, seed=1)
  return d


def test_beam_direct_runner_output_is_byte_identical_to_the_local_runner(
    beam_python, corpus, tokenizer_dir, tmp_path):
  inputs = {"data.files": corpus / "train.txt", "data.eval_files": corpus / "held_out.txt",
            "data.shard_mb": SHARD_MB, "data.tokenizer": tokenizer_dir}
  config = tiny_config(tokenizer_dir, **{k: str(v) if k.endswith("files") else v
                                         for k, v in inputs.items() if k != "data.tokenizer"})
  examples = families.family(config.model).examples
  summary = prepare.prepare(config, tmp_path / "local", examples, workers=1,
                            tokenizer=tokenizer_dir, log=lambda _: None)
  assert summary["shards"]["train"] >= 4  # the pipeline has several elements

  r = subprocess.run([beam_python, "-m", "lm_jax.prepare",
                      f"--config={REPO}/configs/bert_base.py:tiny", f"--out={tmp_path / 'beam'}",
                      *cli_args({**TINY_FLAGS, **inputs}), "--runner=beam",
                      "--beam_options=--runner=DirectRunner --direct_num_workers=1"],
                     cwd=REPO, capture_output=True, text=True, timeout=600,
                     env=dict(os.environ, PYTHONPATH=REPO))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "DirectRunner) ..." in r.stdout and "Prepared " in r.stdout
  local, beam = tree(tmp_path / "local"), tree(tmp_path / "beam")
  assert sorted(local) == sorted(beam) and local == beam


@pytest.mark.skipif(importlib.util.find_spec("apache_beam") is not None,
                    reason="apache_beam is installed in this venv")
def test_beam_runner_without_beam_is_one_sentence(tokenizer_dir, tmp_path):
  config = tiny_config(tokenizer_dir)
  with pytest.raises(UserError, match=r"pip install 'lm_jax\[beam\]'"):
    prepare.prepare(config, tmp_path / "out", families.family(config.model).examples,
                    tokenizer=tokenizer_dir, beam_options=[])
  assert not (tmp_path / "out").exists()  # refused before any work
