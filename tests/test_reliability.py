"""Failures a user meets in practice (issue #15): each ends in one sentence, and
nothing is lost or half-written. Export over a run, SIGTERM on a checkpoint
step, a full disk, a torn metrics line, bad data files, command-line mistakes,
a damaged checkpoint's reason, tokenizer temporaries, two runs on one workdir."""
import errno
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, TINY_FLAGS, cli_args, split_documents, tiny_config
from lm_jax import checkpoint, export, lock, metrics
from lm_jax.data import packing, sources, tokenizer
from lm_jax.errors import UserError

ENV = dict(os.environ, PYTHONPATH=REPO)


def _main_cmd(*args):
  return [sys.executable, "-m", "lm_jax.main", *args]


def _fake_run(path):
  """A directory that looks like an lm_jax workdir (config.json + checkpoints/)."""
  os.makedirs(os.path.join(path, "checkpoints"))
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write('{"model": {"family": "bert"}}')
  return str(path)


# ---- Subprocesses, started together so that they overlap --------------------

@pytest.fixture(scope="module")
def subprocesses(tmp_path_factory, tokenizer_dir):
  """A tiny run saving every step (to be sent SIGTERM), and command lines that must fail."""
  workdir = str(tmp_path_factory.mktemp("preempted"))
  text = tmp_path_factory.mktemp("data") / "austen.txt"  # a part of the corpus: a faster start
  text.write_text("\n\n".join(sources.embedded_documents("train")[:30]))
  flags = dict(TINY_FLAGS, **{"train.steps": 100000, "train.checkpoint_every": 1,
                              "train.eval_every": 0, "data.files": text})
  run = _main_cmd(f"--config={REPO}/configs/bert_base.py:tiny", f"--workdir={workdir}",
                  *cli_args(flags), f"--config.data.tokenizer={tokenizer_dir}")
  fake = _fake_run(tmp_path_factory.mktemp("cli") / "run")
  cases = {
      "no_config": _main_cmd("--workdir=/tmp/unused"),
      "missing_file": _main_cmd("--config=nope/bert.py", "--workdir=/tmp/unused"),
      "unknown_variant": _main_cmd(f"--config={REPO}/configs/bert_base.py:huge",
                                   "--workdir=/tmp/unused"),
      "export_onto_its_run": [sys.executable, "-m", "lm_jax.export", f"--workdir={fake}",
                              f"--out={fake}"],
  }
  popen = lambda cmd: subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
  procs = {"run": popen(run), **{k: popen(cmd) for k, cmd in cases.items()}}
  lines, err = [], []  # the run's output, read as it comes
  readers = [threading.Thread(target=lambda: lines.extend(procs["run"].stdout), daemon=True),
             threading.Thread(target=lambda: err.extend(procs["run"].stderr), daemon=True)]
  for r in readers:
    r.start()
  yield dict(procs=procs, workdir=workdir, fake_run=fake, run_out=lines, run_err=err,
             readers=readers, run_cmd=run)
  for p in procs.values():
    if p.poll() is None:
      p.kill()
    p.wait()
  for r in readers:
    r.join(timeout=10)
  for p in procs.values():
    p.stdout.close()
    p.stderr.close()


# ---- Command-line mistakes (item 10) -----------------------------------------

@pytest.fixture(scope="module")
def cli_results(subprocesses):
  """{case: (returncode, stderr)} of the command lines that must fail."""
  results = {}
  for k, p in subprocesses["procs"].items():
    if k != "run":
      _, err = p.communicate(timeout=300)
      results[k] = (p.returncode, err)
  return results


@pytest.mark.parametrize("case,message", [
    ("no_config", "error: --config is required, e.g. --config=configs/bert_base.py:tiny."),
    ("missing_file", "error: Config file nope/bert.py does not exist; check --config (lm_jax ships albert.py, bert_base.py,"),
    ("unknown_variant", "unknown variant 'huge'; use tiny, demo, base, large or large_batch."),
    ("export_onto_its_run", "is a training run (config.json, checkpoints/); export into another"),
])
def test_command_line_mistakes_are_one_sentence(cli_results, case, message):
  returncode, err = cli_results[case]
  assert returncode == 2, err
  assert message in err
  assert "Traceback" not in err
  assert len([l for l in err.splitlines() if l.strip()]) == 1, err


def test_export_onto_its_run_keeps_the_run(subprocesses, cli_results):
  assert cli_results["export_onto_its_run"][0] == 2
  with open(os.path.join(subprocesses["fake_run"], "config.json")) as f:
    assert json.load(f) == {"model": {"family": "bert"}}  # not replaced by the HF config


# ---- SIGTERM on a checkpoint step (item 3), then export (item 1) ---------------

@pytest.fixture(scope="module")
def preempted(subprocesses):
  """The run saving every step, sent SIGTERM after step 2 and a second run of the same
  command meanwhile: (workdir, returncode, stdout, stderr, the second run's result)."""
  proc, lines, err = subprocesses["procs"]["run"], subprocesses["run_out"], subprocesses["run_err"]
  deadline = time.time() + 240
  while not any(l.startswith("step 2/") for l in lines):
    assert proc.poll() is None and time.time() < deadline, "".join(err)
    time.sleep(0.1)
  second = subprocess.run(subprocesses["run_cmd"], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)  # a requeued job while the first still runs
  proc.send_signal(signal.SIGTERM)
  proc.wait(timeout=120)
  for r in subprocesses["readers"]:
    r.join(timeout=10)  # the rest of the output
  return subprocesses["workdir"], proc.returncode, "".join(lines), "".join(err), second


def test_a_second_run_on_a_workdir_is_refused(preempted):
  workdir, _, out, _, second = preempted
  assert second.returncode == 2, second.stderr[-2000:]
  assert f"error: {workdir} is in use by process" in second.stderr, second.stderr[-2000:]
  assert "Traceback" not in second.stderr
  steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == sorted(set(steps))  # one writer: no duplicate, interleaved lines


def test_sigterm_on_a_checkpoint_step_exits_zero(preempted):
  workdir, returncode, out, err, _ = preempted
  assert returncode == 0, err[-3000:]
  assert "Preempted: saved step" in out
  step = int(out.split("Preempted: saved step ")[1].split(";")[0])
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(step)))


def test_export_writes_a_new_directory_and_refuses_a_full_one(preempted, tmp_path):
  workdir = preempted[0]
  out = tmp_path / "hf"
  export.export(workdir, str(out))
  assert {"config.json", "model.safetensors"} <= set(os.listdir(out))
  assert sorted(os.listdir(tmp_path)) == ["hf"]  # no temporary left beside it

  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "config.json").write_text("my own")
  with pytest.raises(UserError, match=r"is not empty \(it holds config.json\); give a new or "
                                      r"empty directory, or add --overwrite"):
    export.export(workdir, str(mine))
  assert (mine / "config.json").read_text() == "my own"

  export.export(workdir, str(mine), overwrite=True)
  with open(mine / "config.json") as f:
    assert "model_type" in json.load(f)
  assert sorted(os.listdir(tmp_path)) == ["hf", "mine"]


def test_export_refuses_runs_and_files(preempted, tmp_path):
  workdir = preempted[0]
  before = open(os.path.join(workdir, "config.json")).read()
  for out in (workdir, os.path.dirname(workdir)):
    with pytest.raises(UserError, match="export into another directory"):
      export.export(workdir, out, overwrite=True)
  with pytest.raises(UserError, match="is a training run"):
    export.export(workdir, _fake_run(tmp_path / "other"), overwrite=True)
  (tmp_path / "file").write_text("x")
  with pytest.raises(UserError, match="is a file; give a directory"):
    export.export(workdir, str(tmp_path / "file"))
  assert open(os.path.join(workdir, "config.json")).read() == before


def test_a_failed_export_leaves_the_old_directory(preempted, tmp_path, monkeypatch):
  old = tmp_path / "old"
  old.mkdir()
  (old / "keep.txt").write_text("x")

  def half_written(out_dir, *_):
    open(os.path.join(out_dir, "model.safetensors"), "w").close()
    raise OSError(errno.EIO, "Input/output error")
  monkeypatch.setattr(export.interop, "save_pretrained", half_written)
  with pytest.raises(OSError):
    export.export(preempted[0], str(old), overwrite=True)
  assert os.listdir(old) == ["keep.txt"] and os.listdir(tmp_path) == ["old"]


# ---- Checkpoints: saved twice, full disk, a damaged one's reason (3, 5, 11) -----

def _tree():
  return {"w": jax.random.normal(jax.random.key(0), (64, 64)), "b": jnp.zeros(3)}


def test_saving_a_step_twice_is_a_no_op(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _tree(), _tree())
  ckpt.save(1, _tree(), _tree())  # still being written
  ckpt.wait()
  ckpt.save(1, _tree(), _tree())  # written
  ckpt.close()
  assert ckpt.steps() == [1]


def test_disk_full_during_a_save_is_one_sentence(tmp_path, monkeypatch):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _tree(), _tree())

  def full(*_, **__):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(ckpt.manager, "save", full)
  with pytest.raises(UserError) as e:
    ckpt.save(2, _tree(), _tree())
  assert str(e.value) == (
      f"The checkpoint at step 2 could not be written (no space left on {tmp_path}/checkpoints); "
      "the last complete one is step 1, which the same command resumes from once there is space.")
  monkeypatch.undo()
  ckpt.close()  # reported once: no second error


def test_disk_full_reported_by_the_wait_is_one_sentence(tmp_path, monkeypatch):
  """Orbax reports an asynchronous write's failure later, wrapped in its own types."""
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _tree(), _tree())
  ckpt.save(2, _tree(), _tree())
  real_wait = ckpt.manager.wait_until_finished

  def full():
    real_wait()
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as inner:
      raise ValueError('UNKNOWN: Error writing local file "x": No space left on device') from inner
  monkeypatch.setattr(ckpt.manager, "wait_until_finished", full)
  with pytest.raises(UserError, match=r"step 2 could not be written \(no space left on .*\); "
                                      r"the last complete one is step 1,"):
    ckpt.close()
  monkeypatch.undo()
  ckpt.manager.close()


def test_a_damaged_checkpoint_gives_a_clean_reason(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _tree(), _tree())
  ckpt.save(2, _tree(), _tree())
  ckpt.close()
  data = [os.path.join(root, n) for root, _, names in os.walk(tmp_path / "checkpoints/2/params")
          if os.path.basename(root) == "d" for n in names]
  os.remove(max(data, key=os.path.getsize))  # the chunk of "w"
  sh = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  reader = checkpoint.Checkpointer(str(tmp_path), read_only=True)
  with pytest.raises(UserError) as e:
    reader.restore(2, checkpoint.abstract(_tree(), jax.tree.map(lambda _: sh, _tree())))
  reader.close()
  message = str(e.value)
  assert message.startswith("The checkpoint at step 2 cannot be read (")
  assert message.endswith("to resume from step 1, the previous checkpoint.")
  for noise in ("bound method", "pybind11", "tensorstore_spec", "TensorStore details"):
    assert noise not in message


# ---- metrics.jsonl with a torn line (item 6) --------------------------------

def _lines(path):
  with open(path) as f:
    return [json.loads(l) for l in f]


def test_resume_drops_a_torn_last_metrics_line(tmp_path, capsys):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6))
                  + '{"step": 6, "lo')
  metrics.MetricsWriter(str(tmp_path), resume_step=5, total_steps=10).close()
  assert [r["step"] for r in _lines(path)] == [1, 2, 3, 4, 5]
  assert "Note" not in capsys.readouterr().out


def test_resume_drops_a_bad_middle_line_with_a_note(tmp_path, capsys):
  path = tmp_path / "metrics.jsonl"
  path.write_bytes(b'{"step": 1}\n{"st\xff\n{"step": 2}\n{"step": 3}')  # no final newline
  metrics.MetricsWriter(str(tmp_path), resume_step=3, total_steps=10).close()
  assert [r["step"] for r in _lines(path)] == [1, 2, 3]
  out = capsys.readouterr().out
  assert out.count("Note") == 1 and "line 2" in out


# ---- Data files (item 9) ------------------------------------------------------

def _data(**kw):
  return tiny_config(**{f"data.{k}": v for k, v in kw.items()}).data


@pytest.mark.parametrize("name,content,message", [
    ("latin1.txt", "Caf\u00e9 au lait.\n".encode("latin-1"),
     r"latin1.txt is not UTF-8 text \(byte 0xe9 at offset 3\); re-encode it as UTF-8, e.g. with "
     r"iconv -f latin1 -t utf-8\."),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff", r"image.txt is a binary file"),
    ("plain.txt.gz", b"not compressed\n", r"plain.txt.gz ends in .gz but is not gzip-compressed"),
    ("cut.txt.gz", gzip.compress(np.random.default_rng(0).bytes(9000).hex().encode(), mtime=0)[:50],
     r"cut.txt.gz is a damaged gzip"),
], ids=["latin1", "binary", "fake_gz", "cut_gz"])  # the same ids in every xdist worker
def test_bad_data_files_are_one_sentence(tmp_path, name, content, message):
  (tmp_path / name).write_bytes(content)
  data = _data(files=str(tmp_path / name))
  with pytest.raises(UserError, match=message):
    split_documents(data)
  with pytest.raises(UserError, match=message):
    sources.check_inputs(data)


def test_a_glob_matching_a_directory_is_one_sentence(tmp_path):
  (tmp_path / "a.txt").write_text("One document.\n")
  (tmp_path / "sub.txt").mkdir()
  with pytest.raises(UserError, match=r"sub.txt is a directory, not a text file; make the data "
                                      r"glob match files only"):
    sources.check_inputs(_data(files=str(tmp_path / "*.txt")))


def test_check_inputs_reads_only_the_start_and_checks_eval_files(tmp_path):
  big = tmp_path / "big.txt"
  big.write_bytes(b"word " * 200_000 + b"\xe9")  # bad only at 1 MB: not read
  sources.check_inputs(_data(files=str(big)))
  with pytest.raises(UserError, match=r"No files match data.eval_files="):
    sources.check_inputs(_data(files=str(big), eval_files=str(tmp_path / "none*.txt")))
  (tmp_path / "eval.txt").write_bytes(b"\xe9t\xe9")
  with pytest.raises(UserError, match=r"eval.txt is not UTF-8 text"):
    sources.check_inputs(_data(files=str(big), eval_files=str(tmp_path / "eval.txt")))
  sources.check_inputs(_data())  # the embedded corpus: nothing to open


# ---- Tokenizer temporaries (item 11) -------------------------------------------

def test_tokenizer_training_leaves_no_temporaries(tmp_path):
  out = tmp_path / "tok"
  (out / ".tmp-killed").mkdir(parents=True)  # what a run killed while training leaves
  (out / ".tmp-killed" / "spm.model").write_text("partial")
  docs = sources.embedded_documents("eval")[:5]
  sentences = [s for d in docs for s in packing.split_sentences(d)]
  with pytest.raises(UserError, match="Could not train a 100000-piece tokenizer"):
    tokenizer.train(iter(sentences), str(out), 100000)
  assert os.listdir(out) == []
  tokenizer.train(iter(sentences), str(out), 300)
  assert sorted(os.listdir(out)) == ["spm.model", "spm.vocab"]


# ---- One writer per workdir (item 4) -----------------------------------------

_HOLD = """
import sys, time, types
lm_jax = types.ModuleType("lm_jax")  # lock.py without lm_jax/__init__.py's imports (seconds)
lm_jax.__path__ = [sys.argv[2] + "/lm_jax"]
sys.modules["lm_jax"] = lm_jax
from lm_jax.lock import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_process_is_refused_until_the_first_is_gone(tmp_path, capsys):
  holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), REPO], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=rf"{tmp_path} is in use by process {holder.pid} on "
                                        r".* since .*; stop it, or wait for it to end"):
      lock.WorkdirLock(str(tmp_path)).acquire()
  finally:
    holder.kill()
    holder.wait()
    holder.stdout.close()
  with lock.WorkdirLock(str(tmp_path), settle_s=0.01):
    assert f"from process {holder.pid}" in capsys.readouterr().out  # taken over, with a note
  assert not os.path.exists(tmp_path / lock.LOCK_FILE)


def test_the_lock_in_process_heartbeat_and_other_hosts(tmp_path, capsys):
  path = tmp_path / lock.LOCK_FILE
  with lock.WorkdirLock(str(tmp_path), heartbeat_s=0.05):
    first = json.loads(path.read_text())["heartbeat"]
    with pytest.raises(UserError, match="is in use by process"):
      lock.WorkdirLock(str(tmp_path)).acquire()  # a second writer in this process too
    time.sleep(0.3)
    assert json.loads(path.read_text())["heartbeat"] > first
  assert not path.exists()

  record = dict(pid=1, host="elsewhere", token="t", since="2025-01-01T00:00:00")
  path.write_text(json.dumps(dict(record, heartbeat=time.time())))  # alive on another host
  with pytest.raises(UserError, match="in use by process 1 on elsewhere since 2025-01-01T00:00:00"):
    lock.WorkdirLock(str(tmp_path)).acquire()
  path.write_text(json.dumps(dict(record, heartbeat=time.time() - 600)))  # its heartbeat stopped
  with lock.WorkdirLock(str(tmp_path), settle_s=0.01):
    assert re.search(r"took over the lock .* \(its heartbeat is 60\d s old\)",
                     capsys.readouterr().out)
