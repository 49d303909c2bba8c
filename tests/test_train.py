"""The training loop end to end: loss, metrics, exact resume, preemption,
refusals, corrupt checkpoints and lm_jax.load."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import lm_jax
from conftest import REPO, TINY_FLAGS, cli_args, run_main, tiny_config
from lm_jax import train
from lm_jax.errors import UserError


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def train_losses(workdir):
  return {m["step"]: m["loss"] for m in read_metrics(workdir) if "loss" in m}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer_dir):
  """A tiny run of 60 steps, shared by the tests that only read it."""
  workdir = str(tmp_path_factory.mktemp("trained"))
  train.run(tiny_config(tokenizer_dir, **{"train.steps": 60, "train.eval_every": 30,
                                          "train.checkpoint_every": 30}), workdir)
  return workdir


def test_loss_falls(trained):
  losses = [m["loss"] for m in read_metrics(trained) if "loss" in m]
  assert len(losses) == 60
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.5, losses


def test_metrics_jsonl_and_tensorboard(trained):
  records = read_metrics(trained)
  train_line = records[0]
  for key in ("step", "loss", "mlm_accuracy", "nsp_accuracy", "learning_rate", "grad_norm",
              "tokens_per_s"):
    assert key in train_line
  evals = [m for m in records if "eval_loss" in m]
  assert [m["step"] for m in evals] == [30, 60]
  assert "eval_mlm_accuracy" in evals[0] and evals[1]["eval_loss"] < evals[0]["eval_loss"]
  events = os.listdir(os.path.join(trained, "tensorboard"))
  assert any(name.startswith("events.out.tfevents") for name in events)
  with open(os.path.join(trained, "config.json")) as f:
    assert json.load(f)["train"]["steps"] == 60


def test_exact_resume(tmp_path, tokenizer_dir):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  overrides = {"train.schedule_steps": 40, "train.eval_every": 20}
  train.run(tiny_config(tokenizer_dir, **overrides, **{"train.steps": 40}), straight)
  train.run(tiny_config(tokenizer_dir, **overrides, **{"train.steps": 20}), resumed)
  train.run(tiny_config(tokenizer_dir, **overrides, **{"train.steps": 40}), resumed)
  a, b = train_losses(straight), train_losses(resumed)
  assert sorted(b) == list(range(1, 41))  # one line per step, none repeated
  assert [a[s] for s in range(21, 41)] == [b[s] for s in range(21, 41)]  # bitwise
  evals = lambda d: [m for m in read_metrics(d) if "eval_loss" in m]
  assert evals(straight) == evals(resumed)


def test_grad_accumulation_matches_one_big_batch(tmp_path, tokenizer_dir):
  no_dropout = {"model.hidden_dropout_prob": 0.0, "model.attention_probs_dropout_prob": 0.0,
                "train.steps": 3, "train.eval_every": 0}
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  train.run(tiny_config(tokenizer_dir, **no_dropout), one)
  train.run(tiny_config(tokenizer_dir, **no_dropout, **{"train.grad_accum_steps": 2}), two)
  a, b = train_losses(one), train_losses(two)
  # Same global batch; each micro-batch normalises its own MLM loss, so close, not equal.
  assert abs(a[1] - b[1]) / a[1] < 0.02 and abs(a[3] - b[3]) / a[3] < 0.02


def _wait_for(predicate, proc, timeout=120):
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, proc.communicate()
    assert time.time() < deadline, "timed out"
    time.sleep(0.2)


def _popen_main(workdir, *extra):
  cmd = [sys.executable, "-m", "lm_jax.main", f"--config={REPO}/configs/bert_base.py:tiny",
         f"--workdir={workdir}", *cli_args(TINY_FLAGS), *extra]
  return subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _logged_steps(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  return len(open(path).readlines()) if os.path.exists(path) else 0


def test_sigterm_saves_and_exits_zero(tmp_path, tokenizer_dir):
  workdir = str(tmp_path)
  proc = _popen_main(workdir, "--config.train.steps=100000", f"--config.data.tokenizer={tokenizer_dir}",
                     "--config.train.checkpoint_every=100000", "--config.train.eval_every=0")
  _wait_for(lambda: _logged_steps(workdir) >= 3, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  assert "Preempted: saved step" in out
  saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert len(saved) == 1 and saved[0] >= 3


def test_kills_at_random_moments_resume_to_the_uninterrupted_run(tmp_path, tokenizer_dir):
  """Fault injection: SIGKILL three times at random moments (saves every 2 steps, so
  some land inside a save), resume each time; the losses equal an uninterrupted
  run's bit for bit, every step is logged once, and no torn file blocks a resume."""
  import random
  overrides = {"train.steps": 30, "train.checkpoint_every": 2, "train.eval_every": 0,
               "data.tokenizer": tokenizer_dir}
  straight = str(tmp_path / "straight")
  train.run(tiny_config(**overrides), straight)
  workdir, rng, kills = str(tmp_path / "killed"), random.Random(0), 0
  args = cli_args({k: v for k, v in overrides.items() if k != "train.steps"})
  while kills < 3:
    proc = _popen_main(workdir, *args, "--config.train.steps=30")
    start = _logged_steps(workdir)
    _wait_for(lambda: _logged_steps(workdir) > start or proc.poll() is not None, proc)
    time.sleep(rng.uniform(0.0, 1.5))
    if proc.poll() is not None:
      break  # it finished before this kill
    proc.kill()
    proc.communicate()
    kills += 1
  result = run_main(workdir, *args, "--config.train.steps=30")
  assert result.returncode == 0, result.stderr[-3000:]
  assert kills >= 2, "the runs ended before they could be killed; make them longer"
  steps = [m["step"] for m in read_metrics(workdir) if "loss" in m]
  assert steps == list(range(1, 31))
  assert train_losses(workdir) == train_losses(straight)


def test_refuses_a_workdir_of_another_model(trained):
  result = run_main(trained, "--config.model.hidden_size=32")
  assert result.returncode == 2
  assert "holds a run of a different model (model.hidden_size was 64, now 32)" in result.stderr
  assert "Traceback" not in result.stderr
  assert os.path.isdir(os.path.join(trained, "checkpoints", "60"))  # nothing lost


@pytest.mark.parametrize("flags,message", [
    (["--config.train.stepz=3"], "Unknown config key 'train.stepz'"),
    (["--config.train.steps=abc"], "--config.train.steps=abc"),
    (["--config.train.steps=-5"], "train.steps=-5 must be positive"),
    (["--config.data.seq_len=100"], "data.seq_len=100 is above model.max_position_embeddings=64"),
    (["--config.data.files=/nonexistent/*.txt"], "No files match data.files"),
    (["--config.model.vocab_size=500"], "The tokenizer has 8000 pieces but model.vocab_size=500"),
    (["--config.mesh.data=2"], "does not match the 1 device"),
])
def test_bad_input_is_one_sentence(tmp_path, tokenizer_dir, flags, message):
  result = run_main(str(tmp_path / "run"), f"--config.data.tokenizer={tokenizer_dir}", *flags)
  assert result.returncode == 2, result.stderr
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  error_lines = [l for l in result.stderr.splitlines() if l.startswith(("error:", "FATAL"))]
  assert len(error_lines) == 1


def test_batch_must_divide_the_data_parallel_devices(tmp_path, tokenizer_dir):
  result = run_main(str(tmp_path), f"--config.data.tokenizer={tokenizer_dir}",
                    "--config.train.batch_size=12",
                    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert result.returncode == 2
  assert "is not divisible by the 8 data-parallel devices" in result.stderr


def test_corrupt_latest_checkpoint_names_the_previous_good_step(tmp_path, tokenizer_dir):
  workdir = str(tmp_path)
  train.run(tiny_config(tokenizer_dir, **{"train.eval_every": 0}), workdir)
  params_dir = os.path.join(workdir, "checkpoints", "20", "params")
  for root, _, files in os.walk(params_dir):
    for name in files:
      if "manifest" in name or name.endswith(".ocdbt") or "d" == os.path.basename(root):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  with pytest.raises(UserError, match=r"checkpoint at step 20 cannot be read .*resume from "
                                      r"step 10, the previous checkpoint"):
    train.run(tiny_config(tokenizer_dir, **{"train.eval_every": 0, "train.steps": 30}), workdir)


def test_load_gives_logits_hidden_states_and_fill_mask(trained):
  model = lm_jax.load(trained)
  assert model.step == 60
  texts = ["Emma was handsome, clever, and rich.", "She [MASK] the youngest."]
  logits = model.mlm_logits(texts)
  hidden = model.hidden_states(texts)
  ids, _, mask = model.encode(texts)
  assert logits.shape == (*ids.shape, 8000) and hidden.shape == (*ids.shape, 64)
  # Padding does not change a text's outputs.
  alone = model.mlm_logits(texts[1:])
  n = int(mask[1].sum())
  np.testing.assert_allclose(alone[0, :n], logits[1, :n], atol=1e-4)
  top = model.fill_mask(texts[1], top_k=3)  # one mask: its candidates, as transformers' pipeline
  assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
  older = lm_jax.load(trained, step=30)
  assert older.step == 30 and not np.allclose(older.mlm_logits(texts), logits)
  with pytest.raises(UserError, match="no checkpoint at step 7"):
    lm_jax.load(trained, step=7)
  with pytest.raises(UserError, match="is not an lm_jax run"):
    lm_jax.load(os.path.join(trained, "tokenizer"))


def test_divergence_is_never_checkpointed(tmp_path, tokenizer_dir):
  """lr 1e9 with saves every step and logs every 10: the first non-finite parameters
  stop the run before they are saved, so the rotation keeps good checkpoints only."""
  from lm_jax import workdir as workdir_lib
  workdir = str(tmp_path)
  config = tiny_config(tokenizer_dir, **{"train.learning_rate": 1e9, "train.warmup_steps": 0,
                                         "train.log_every": 10, "train.checkpoint_every": 1,
                                         "train.keep_checkpoints": 1, "train.eval_every": 0})
  with pytest.raises(UserError, match=r"Training diverged at step \d+ \(the parameters are no "
                                      r"longer finite\).*last good checkpoint is step (\d+)") as e:
    train.run(config, workdir)
  _, _, params, step = workdir_lib.restore_params(workdir)  # the one checkpoint kept
  assert str(e.value).endswith(f"is step {step}).")
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_a_failed_start_keeps_config_json_and_a_lost_tokenizer_is_refused(trained, tmp_path,
                                                                         tokenizer_dir):
  """A start that fails on its data does not overwrite the config the checkpoints were
  trained with (a resume reads its prepared corpus, not the input, and refuses other
  input); checkpoints without their tokenizer are refused, never retrained."""
  import shutil
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  before = open(os.path.join(workdir, "config.json")).read()
  with pytest.raises(UserError, match="was prepared from other input"):
    train.run(tiny_config(tokenizer_dir, **{"train.steps": 80,
                                            "data.files": str(tmp_path / "missing*.txt")}), workdir)
  assert open(os.path.join(workdir, "config.json")).read() == before
  shutil.rmtree(os.path.join(workdir, "tokenizer"))
  with pytest.raises(UserError, match="has checkpoints but no tokenizer/"):
    train.run(tiny_config(tokenizer_dir, **{"train.steps": 80}), workdir)
  assert not os.path.exists(os.path.join(workdir, "tokenizer"))


def test_another_family_on_a_workdir_names_the_family(trained):
  from configs import elmo
  with pytest.raises(UserError, match=r"model\.family was 'bert', now 'elmo'"):
    train.run(elmo.get_config("tiny"), trained)


def test_truncated_config_json_is_one_sentence(trained, tmp_path):
  import shutil
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  path = os.path.join(workdir, "config.json")
  text = open(path).read()
  with open(path, "w") as f:
    f.write(text[:len(text) // 2])
  with pytest.raises(UserError, match="config.json is not valid JSON"):
    lm_jax.load(workdir)


def test_resuming_with_another_optimizer_is_refused(trained, tokenizer_dir):
  """The checkpoints hold AdamW's state: another optimizer cannot restore it."""
  with pytest.raises(UserError, match=r"hold the optimizer state of train.optimizer='adamw', not "
                                      r"'adagrad'"):
    train.run(tiny_config(tokenizer_dir, **{"train.steps": 80, "train.optimizer": "adagrad"}),
              trained)


@pytest.mark.parametrize("key,value", [("data.seq_len", 32), ("train.batch_size", 4)])
def test_resuming_with_other_batches_is_refused(trained, tokenizer_dir, key, value):
  """Batch k of the checkpoints' run is a function of (seed, k) at their seq_len and batch
  size: another shape would resume a different run (train.phases changes it within one)."""
  before = os.listdir(os.path.join(trained, "checkpoints"))
  with pytest.raises(UserError, match=rf"checkpoints were trained with {key}=\d+, not {value}: "):
    train.run(tiny_config(tokenizer_dir, **{"train.steps": 80, key: value}), trained)
  assert os.listdir(os.path.join(trained, "checkpoints")) == before
