"""`python -m lm_jax.validate`: every family passes its three checks on the CPU,
and a bad command line ends in one sentence and exit status 2."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

FAMILIES = ["bert", "roberta", "albert", "electra", "gpt2", "elmo"]
FIELDS = {"family", "devices", "steps_per_s", "tokens_per_s", "loss_first", "loss_last",
          "resume_exact", "export_max_abs_diff", "passed"}


def run_validate(*args, xla_flags=""):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip())
  return subprocess.run([sys.executable, "-m", "lm_jax.validate", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=900)


def test_every_family_passes(tmp_path):
  json_path = tmp_path / "result.json"
  # Compilation is most of the time on a CPU; XLA's optimisation level 0 halves it
  # and changes none of the checks (all runs of a family compile the same way).
  result = run_validate(f"--workdir={tmp_path / 'runs'}", f"--json={json_path}",
                        xla_flags="--xla_backend_optimization_level=0")
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  report = json.loads(json_path.read_text())
  assert report["passed"] and report["failures"] == []
  assert [row["family"] for row in report["rows"]] == FAMILIES
  for row in report["rows"]:
    assert FIELDS <= set(row), row
    assert row["passed"] and row["resume_exact"], row
    assert row["loss_last"] < row["loss_first"] and row["export_max_abs_diff"] <= 1e-4, row
    assert row["devices"] == "1 cpu" and row["tokens_per_s"] > 0 and row["steps_per_s"] > 0, row
  table = result.stdout[result.stdout.index("family  "):].splitlines()
  assert len(table) == 1 + len(FAMILIES) + 1  # header, one line a family, "All checks passed"
  for family, line in zip(FAMILIES, table[1:]):
    assert line.startswith(family) and " yes " in line and " ok " in line, line


@pytest.mark.parametrize("args, message", [
    (["--families=bert,bart"], "Unknown family 'bart' in --families; choose from "
                               "bert,roberta,albert,electra,gpt2,elmo."),
    (["--steps=5"], "--steps=5 is too few to check; give an even number of at least 8."),
])
def test_bad_command_line_is_one_sentence(args, message):
  result = run_validate(*args)
  assert result.returncode == 2 and result.stderr.strip() == f"error: {message}", result.stderr
  assert result.stdout == ""


def test_refuses_a_workdir_holding_a_run(tmp_path):
  (tmp_path / "gpt2").mkdir()
  result = run_validate(f"--workdir={tmp_path}", "--families=gpt2")
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip() == (f"error: {tmp_path / 'gpt2'} already exists; give a new or "
                                   "empty --workdir.")
