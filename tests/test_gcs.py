"""gs:// wherever a path goes, offline: prepare -> train -> resume -> export -> load,
all on a GCS emulator (gcp-storage-emulator) on 127.0.0.1, and prepare's input
files read from it.

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
import tensorflow_datasets as tfds

from conftest import REPO, TINY_FLAGS, cli_args, cli_prepare, tree

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
  # A run started from the export (init.from_hf on gs://); one step at learning rate
  # 1e-20 leaves its weights the export's.
  from_hf = f"gs://{BUCKET}/from_hf"
  _run(gcs, "lm_jax.main", *[f"--workdir={from_hf}" if a == f"--workdir={run}" else a for a in common],
       f"--config.init.from_hf={out}", f"--config.data.tokenizer={run}/tokenizer",
       "--config.train.steps=1", "--config.train.learning_rate=1e-20")
  check = _python(gcs, f"""
import json, numpy as np, lm_jax
from lm_jax import paths
lines = [json.loads(l) for l in paths.read_text("{run}/metrics.jsonl").splitlines()]
ours, theirs, started = lm_jax.load("{run}"), lm_jax.load("{out}"), lm_jax.load("{from_hf}")
texts = ["Emma was handsome, clever, and rich."]
diff = float(np.abs(ours.mlm_logits(texts) - theirs.mlm_logits(texts)).max())
started_diff = float(np.abs(started.mlm_logits(texts) - theirs.mlm_logits(texts)).max())
print(json.dumps(dict(steps=[l["step"] for l in lines if "loss" in l], step=ours.step, diff=diff,
                      started_diff=started_diff, started_step=started.step,
                      exported=paths.listdir("{out}"), run=paths.listdir("{run}"))))
""")
  assert check.returncode == 0, check.stderr[-3000:]
  result = json.loads(check.stdout.strip().splitlines()[-1])
  assert result["steps"] == list(range(1, 9))  # each step once, across the resume
  assert result["step"] == 8 and result["diff"] <= 1e-4
  assert result["started_step"] == 1 and result["started_diff"] <= 1e-4
  assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(result["exported"])
  assert {"config.json", "checkpoints", "metrics.jsonl", "tokenizer"} <= set(result["run"])
  assert "lock.json" not in result["run"]  # released at the end


def _upload(env, local_dir, remote_dir):
  upload = _python(env, f"from lm_jax import paths; paths.copytree({str(local_dir)!r}, {remote_dir!r})")
  assert upload.returncode == 0, upload.stderr[-3000:]


def _assert_same_corpus(local_dir, remote_dir, renames):
  """The two prepared corpora hold the same bytes, but for the input's name in their
  JSON records (`renames`: {remote name: local name}) and the hashes of those records."""
  local, remote = tree(local_dir), tree(remote_dir)
  assert set(remote) == set(local) and any(k.endswith(".array_record") for k in local)

  def named_locally(data):
    for old, new in renames.items():
      data = data.replace(old.encode(), new.encode())
    record = json.loads(data)
    record.pop("documents_sha", None)
    record.pop("input_sha", None)
    return record
  for name, data in remote.items():
    if name.endswith(".json"):
      assert named_locally(data) == named_locally(local[name]), name
    else:
      assert data == local[name], name


def test_prepare_reads_input_files_on_gcs_as_on_disk(gcs, tmp_path, tokenizer_dir, text_dir,
                                                      one_worker):
  """The text files of `one_worker`, uploaded under a deeper prefix and globbed with
  `**`: the same slices (byte ranges cut inside files, a .gz whole) give the same
  shards, byte for byte."""
  remote = f"gs://{BUCKET}/input"
  _upload(gcs, text_dir, f"{remote}/deeper")
  out = tmp_path / "from_gcs"
  cli_prepare(out, tokenizer_dir, f"{remote}/**", "--workers=1", env=gcs, timeout=TIMEOUT)
  _assert_same_corpus(one_worker, out, {f"{remote}/**": str(text_dir),
                                        f"{remote}/deeper": str(text_dir)})


class LmJaxTinyText(tfds.core.GeneratorBasedBuilder):
  """About 1 MB of Austen's paragraphs as a tfds dataset (ArrayRecord, built offline)."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self,
                                 features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples("train"), "test": self._generate_examples("eval")}

  def _generate_examples(self, split):
    from lm_jax.data import sources  # pylint: disable=g-import-not-at-top
    paragraphs = [p for d in sources.embedded_documents(split) for p in d.split("\n")]
    for i, p in enumerate(paragraphs[:3000]):
      yield i, {"text": p}


def test_prepare_reads_a_tfds_dataset_on_gcs_as_on_disk(gcs, tmp_path, tokenizer_dir):
  """The README's pod recipe: data.tfds_data_dir on gs:// (tfds.data_source; ArrayRecord
  reads the records), by index ranges per shard: the same shards as from disk."""
  local_tfds, remote_tfds = tmp_path / "tfds", f"gs://{BUCKET}/tfds"
  LmJaxTinyText(data_dir=str(local_tfds), file_format="array_record").download_and_prepare()
  _upload(gcs, local_tfds / "lm_jax_tiny_text", f"{remote_tfds}/lm_jax_tiny_text")
  flags = {**{k: v for k, v in TINY_FLAGS.items() if k.startswith(("model.", "data."))},
           "data.tfds_name": "lm_jax_tiny_text", "data.tfds_eval_split": "test",
           "data.shard_mb": 0.1, "data.tokenizer": tokenizer_dir}
  outs = {}
  for where, data_dir in (("disk", local_tfds), ("gcs", remote_tfds)):
    outs[where] = tmp_path / f"from_{where}"
    _run(gcs, "lm_jax.prepare", f"--config={REPO}/configs/bert_base.py:tiny",
         f"--out={outs[where]}", *cli_args({**flags, "data.tfds_data_dir": data_dir}),
         "--workers=1")
  train_shards = [k for k in tree(outs["gcs"]) if k.startswith("documents/train-")]
  assert len(train_shards) >= 4  # several index ranges
  _assert_same_corpus(outs["disk"], outs["gcs"], {remote_tfds: str(local_tfds)})
