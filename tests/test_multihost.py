"""Several processes on one machine: jax.distributed over gloo, fake CPU devices.

The same code path as a TPU pod or a SLURM cluster, minus the network:
launch/local_multiprocess.sh starts the processes; checkpoints are written
collectively and restored onto another host count and mesh.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TINY_FLAGS, cli_args, run_main

LAUNCH = os.path.join(REPO, "launch", "local_multiprocess.sh")
# A fixed schedule length, so that runs with different train.steps take the same steps.
FLAGS = dict(TINY_FLAGS, **{"model.num_hidden_layers": 1, "train.steps": 40,
                            "train.schedule_steps": 40, "train.eval_every": 0,
                            "train.checkpoint_every": 2, "train.keep_checkpoints": 10})


def free_port():
  with socket.socket() as s:
    s.bind(("", 0))
    return s.getsockname()[1]


def logged_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def complete_checkpoints(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def test_two_processes_checkpoint_killed_resume_on_one(tmp_path, tokenizer_dir):
  """2 processes x 4 devices train and checkpoint; killed; 1 process x 8 devices resumes."""
  workdir = str(tmp_path / "run")
  tok = f"--config.data.tokenizer={tokenizer_dir}"
  cmd = [LAUNCH, "2", "4", f"--config={REPO}/configs/bert_base.py:tiny", f"--workdir={workdir}",
         *cli_args(FLAGS), tok, "--config.mesh.data=2", "--config.mesh.fsdp=-1"]
  env = dict(os.environ, PYTHONPATH=REPO, PYTHON=sys.executable)
  with open(tmp_path / "process_0.log", "w") as log:
    launcher = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
      deadline = time.time() + 240
      while time.time() < deadline and launcher.poll() is None:
        done = complete_checkpoints(workdir)
        if done and os.path.exists(os.path.join(workdir, "metrics.jsonl")) \
            and max(logged_losses(workdir)) >= done[-1] + 2:
          break
        time.sleep(0.1)
    finally:
      if launcher.poll() is None:
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and both processes, mid-run
      launcher.wait()
  output = (tmp_path / "process_0.log").read_text()
  assert launcher.returncode == -signal.SIGKILL, output[-3000:]
  before = logged_losses(workdir)
  resume_from = complete_checkpoints(workdir)[-1]
  assert max(before) > resume_from, "the run was killed before it trained past a checkpoint"

  # Who is who, and only process 0 reports progress.
  assert "process 0/2 on" in output and "4 local cpu devices [0,1,2,3] of 8" in output
  assert "mesh {'data': 2, 'fsdp': 4, 'tensor': 1}" in output
  other = open(os.path.join(workdir, "process_1.log")).read()
  assert "process 1/2 on" in other and "4 local cpu devices [" in other and "] of 8;" in other
  assert "step 1/40" in output and "step 1/40" not in other

  # Resume on one process with 8 devices and another mesh: the same next losses.
  end = min(max(before), resume_from + 2)
  r = run_main(workdir, *cli_args(FLAGS), tok, f"--config.train.steps={end}",
               "--config.mesh.data=1", "--config.mesh.fsdp=8",
               env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"Resumed from step {resume_from}" in r.stdout
  after = logged_losses(workdir)
  steps = list(range(resume_from + 1, end + 1))
  np.testing.assert_allclose([after[s] for s in steps], [before[s] for s in steps], rtol=1e-5)


def test_each_process_reads_its_share_of_the_global_batch(tokenizer_dir, tmp_path):
  from conftest import prepared_examples, tiny_config
  data = prepared_examples(tiny_config(tokenizer_dir), str(tmp_path))
  shares = [next(data.batches(8, 3, 4, process_index=p, process_count=2, threads=1))
            for p in range(2)]
  whole = data.global_batch(3, 8)
  for key, value in whole.items():
    assert shares[0][key].shape[0] == 4
    np.testing.assert_array_equal(np.concatenate([s[key] for s in shares]), value)


def start_alone(tmp_path, *flags):
  """One process of a multi-process run whose partners never start."""
  return run_main(tmp_path, "--initialization_timeout=3", *flags, timeout=120)


def assert_one_sentence(r, *words):
  assert r.returncode == 2, r.stderr[-3000:]
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
  for w in words:
    assert w in lines[0], lines[0]


def test_missing_process_times_out_naming_it(tmp_path):
  r = start_alone(tmp_path, f"--coordinator_address=127.0.0.1:{free_port()}",
                  "--num_processes=2", "--process_id=0")
  assert_one_sentence(r, "Process 1 of 2 never joined within 3 s")


def test_missing_coordinator_times_out_naming_it(tmp_path):
  port = free_port()
  r = start_alone(tmp_path, f"--coordinator_address=127.0.0.1:{port}",
                  "--num_processes=3", "--process_id=2")
  assert_one_sentence(r, f"Process 0 (the coordinator at 127.0.0.1:{port}) could not be reached "
                         "within 3 s")


def test_bad_coordinator_address_on_the_command_line(tmp_path):
  r = start_alone(tmp_path, "--coordinator_address=no-such-host.invalid:1234",
                  "--num_processes=2", "--process_id=1")
  assert_one_sentence(r, "'no-such-host.invalid'", "cannot be resolved")


@pytest.mark.parametrize("address, num_processes, process_id, words", [
    ("10.0.0.1", 2, 1, "is not HOST:PORT"),
    ("10.0.0.1:99999", 2, 1, "is not HOST:PORT"),
    ("127.0.0.1:1234", 2, None, "go together"),
    ("127.0.0.1:1234", 2, 2, "--process_id=2 is not in [0, --num_processes=2)"),
])
def test_bad_distributed_flags(address, num_processes, process_id, words):
  from lm_jax import parallel
  from lm_jax.errors import UserError
  with pytest.raises(UserError) as e:
    parallel.initialize_distributed(address, num_processes, process_id, timeout_s=3)
  assert words in str(e.value) and "\n" not in str(e.value)


def test_coordinator_port_in_use():
  from lm_jax import parallel
  from lm_jax.errors import UserError
  with socket.socket() as busy:
    busy.bind(("", 0))
    busy.listen()
    port = busy.getsockname()[1]
    with pytest.raises(UserError, match=f"Port {port} is already in use on this host"):
      parallel.initialize_distributed(f"127.0.0.1:{port}", 2, 0, timeout_s=3)


def test_mesh_that_gives_hosts_the_same_rows_is_refused(tmp_path):
  """Each process reads its own rows, so the batch axes must split across processes."""
  r = subprocess.run([LAUNCH, "2", "4", f"--config={REPO}/configs/bert_base.py:tiny",
                      f"--workdir={tmp_path}", "--config.mesh.data=1", "--config.mesh.tensor=8"],
                     cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, PYTHON=sys.executable),
                     capture_output=True, text=True, timeout=120)
  assert_one_sentence(r, "gives processes the same batch rows", "keep mesh.tensor within one host")
