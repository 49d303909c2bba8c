"""gs:// wherever a path goes, offline: prepare -> train -> resume -> export -> load,
all on a GCS emulator (gcp-storage-emulator) on 127.0.0.1.

Every client is pointed at the emulator by its own variable (a client that
misses its variable would wait on the real GCS, or on a metadata server):
google-cloud-storage and gcsfs by STORAGE_EMULATOR_HOST, tensorstore (Orbax)
by TENSORSTORE_GCS_HTTP_URL, ArrayRecord (google-cloud-cpp) by
CLOUD_STORAGE_EMULATOR_ENDPOINT. Every command runs in a subprocess with a
hard timeout, so a client that hangs fails the test instead of the suite.
The emulator runs with two mends that make it answer as GCS does
(tests/gcs_emulator.py).
"""
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, TINY_FLAGS, cli_args

BUCKET = "lm-jax-test"
TIMEOUT = 240  # seconds per command: a hang fails here


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
  """The environment of a running emulator holding one empty bucket."""
  assert importlib.util.find_spec("gcp_storage_emulator"), "pip install '.[test]' installs it"
  port = _free_port()
  server = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "gcs_emulator.py"),
                             "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
                             f"--default-bucket={BUCKET}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  deadline = time.time() + 60
  while True:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      break
    except OSError:
      assert server.poll() is None and time.time() < deadline, "the GCS emulator did not start"
      time.sleep(0.2)
  url = f"http://127.0.0.1:{port}"
  env = dict(os.environ, PYTHONPATH=REPO, STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url,
             CLOUD_STORAGE_EMULATOR_ENDPOINT=url, EPATH_USE_TF="false",
             GOOGLE_CLOUD_PROJECT="lm-jax-test")
  yield env
  server.kill()
  server.wait()


def _run(env, module, *args):
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _python(env, code):
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=TIMEOUT)


def test_prepare_train_resume_export_load_on_gcs(gcs, tokenizer_dir):
  corpus, run, out = (f"gs://{BUCKET}/{name}" for name in ("corpus", "run", "exported"))
  flags = {k: v for k, v in TINY_FLAGS.items() if k != "train.steps"}
  config = f"--config={REPO}/configs/bert_base.py:tiny"
  _run(gcs, "lm_jax.prepare", config, f"--out={corpus}", f"--config.data.tokenizer={tokenizer_dir}",
       *cli_args({k: v for k, v in flags.items() if k.startswith(("model.", "data."))}),
       "--workers=1")
  common = [config, f"--workdir={run}", f"--config.data.prepared={corpus}", *cli_args(flags),
            "--config.train.eval_every=0", "--config.train.checkpoint_every=4"]
  _run(gcs, "lm_jax.main", *common, "--config.train.steps=4")
  resumed = _run(gcs, "lm_jax.main", *common, "--config.train.steps=8")
  assert "Resumed from step 4" in resumed.stdout
  _run(gcs, "lm_jax.export", f"--workdir={run}", f"--out={out}")
  check = _python(gcs, f"""
import json, numpy as np, lm_jax
from lm_jax import paths
lines = [json.loads(l) for l in paths.read_text("{run}/metrics.jsonl").splitlines()]
ours, theirs = lm_jax.load("{run}"), lm_jax.load("{out}")
texts = ["Emma was handsome, clever, and rich."]
diff = float(np.abs(ours.mlm_logits(texts) - theirs.mlm_logits(texts)).max())
print(json.dumps(dict(steps=[l["step"] for l in lines if "loss" in l], step=ours.step, diff=diff,
                      exported=paths.listdir("{out}"), run=paths.listdir("{run}"))))
""")
  assert check.returncode == 0, check.stderr[-3000:]
  result = json.loads(check.stdout.strip().splitlines()[-1])
  assert result["steps"] == list(range(1, 9))  # each step once, across the resume
  assert result["step"] == 8 and result["diff"] <= 1e-4
  assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(result["exported"])
  assert {"config.json", "checkpoints", "metrics.jsonl", "tokenizer"} <= set(result["run"])
  assert "lock.json" not in result["run"]  # released at the end
