"""`python -m lm_jax.bench` and bench/gpu_suite.sh: every family's synthetic batch,
FLOPs formula and PyTorch peer; the suite end to end on tiny CPU settings."""
import importlib
import json
import math
import os
import subprocess
import sys
import tarfile

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from conftest import REPO, TINY_FLAGS, cli_args, override
from lm_jax import bench_peer, families

CONFIG_FILES = dict(bert="bert_base", roberta="roberta", albert="albert", electra="electra",
                    gpt2="gpt2", elmo="elmo")
# Each family's tiny variant, smaller still, with a small batch: milliseconds to build.
SMALLER = {**{f: {"data.seq_len": 16, "data.max_predictions_per_seq": 3, "train.batch_size": 2}
              for f in CONFIG_FILES},
           "gpt2": {"data.seq_len": 16, "train.batch_size": 2},
           "elmo": {"data.seq_len": 5, "train.batch_size": 2, "model.lstm_dim": 32,
                    "model.projection_dim": 16, "model.n_negative_samples": 16,
                    "model.vocab_size": 100}}


def small_config(family):
  config = importlib.import_module(f"configs.{CONFIG_FILES[family]}").get_config("tiny")
  return override(config, SMALLER[family])


def _param_sizes(model):
  """{path: size} of an NNX model's parameters."""
  leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
  return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): x.size
          for path, x in leaves}


@pytest.mark.parametrize("family", list(CONFIG_FILES))
def test_family_bench_record_and_peer(family):
  config = small_config(family)
  record = families.get(config.model)
  model = families.build_model(config.model, rngs=nnx.Rngs(0))
  sizes = _param_sizes(model)

  # The synthetic batch is one the family's loss takes (traced, not compiled).
  batch = record.synthetic_batch(config, np.random.default_rng(0))
  carry = () if record.initial_carry is None else (record.initial_carry(config, 2),)
  loss = jax.eval_shape(lambda b, *c: record.loss(model, b, jax.random.key(0), *c)[0], batch, *carry)
  assert loss.shape == ()

  # The analytic FLOPs count the parameters of lm_jax's own tree (embedding tables aside).
  fpt, m, t = record.flops_per_token(config, None), config.model, config.data.seq_len
  if family in ("bert", "roberta", "gpt2"):
    d = m.hidden_size if family != "gpt2" else m.n_embd
    layers = m.num_hidden_layers if family != "gpt2" else m.n_layer
    table = lambda k: k.split("/")[-3] in ("word_embeddings", "position_embeddings",
                                           "token_type_embeddings", "wte", "wpe")
    embeddings = sum(n for k, n in sizes.items() if table(k) or "embeddings/LayerNorm" in k)
    assert fpt == 6 * (sum(sizes.values()) - embeddings + m.vocab_size * d) + 12 * layers * t * d
  assert fpt > 0 and isinstance(fpt, int)

  # The PyTorch peer is the same model (ELMo: PyTorch's LSTMs have two biases) and trains.
  peer, inputs = bench_peer.PEERS[family](config, "cpu")
  extra = 2 * m.n_layers * 4 * m.lstm_dim if family == "elmo" else 0
  assert sum(p.numel() for p in peer.parameters()) == sum(sizes.values()) + extra
  out = peer.train()(**inputs)
  peer_loss = out if isinstance(out, torch.Tensor) else out.loss
  peer_loss.backward()
  assert math.isfinite(peer_loss.item())


def test_gpu_suite_smoke(tmp_path):
  """bench/gpu_suite.sh --smoke end to end on one of its workloads, BERT against
  its HF peer with a profile (~1.5 minutes on 2 loaded cores; all six workloads
  take ~7.5, two ~3.5). test_family_bench_record_and_peer covers every family's
  batch, FLOPs and peer, test_pipeline_benchmark the pipeline; the ELMo run
  (--only=elmo_train) is checked by hand."""
  out = tmp_path / "out"
  proc = subprocess.run(["bash", f"{REPO}/bench/gpu_suite.sh", "--smoke", "--only=bert_s128",
                         str(out)], cwd=REPO, env=dict(os.environ, PYTHON=sys.executable),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
  env = lines[0]
  assert env["suite"] == "env" and env["missing"] == [] and env["devices"] == ["cpu"]
  suite = {r["suite"]: r for r in lines if "suite" in r and r["suite"] != "env"}
  assert set(suite) == {"bert_s128"} and suite["bert_s128"]["rc"] == 0
  ours, peer, ratio = [r for r in lines if r.get("workload") == "bert_s128"]
  assert ours["bench"].startswith("lm_jax_bert") and peer["bench"].startswith("hf_torch_bert")
  for r in (ours, peer):
    assert r["step_ms"] > 0 and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1
  # Both sides count the same FLOPs per token, from the same function, of the same model.
  assert ours["flops_per_token"] == peer["flops_per_token"] and ours["params"] == peer["params"]
  assert abs(ours["mfu"] / ours["tokens_per_s"] - peer["mfu"] / peer["tokens_per_s"]) < 1e-9
  assert abs(ratio["lm_jax_over_peer"] - ours["tokens_per_s"] / peer["tokens_per_s"]) < 1e-2
  # What comes back from a device run: at most 8 files, the trace in one archive.
  assert sorted(os.listdir(out)) == ["logs.tgz", "profile.tgz", "results.jsonl"]
  with tarfile.open(out / "profile.tgz") as tar:
    assert any(name.endswith(".xplane.pb") for name in tar.getnames())
  with tarfile.open(out / "logs.tgz") as tar:
    assert "./bert_s128.log" in tar.getnames()


def bench(*flags):
  cmd = [sys.executable, "-m", "lm_jax.bench", f"--config={REPO}/configs/bert_base.py:tiny",
         *cli_args({k: v for k, v in TINY_FLAGS.items() if k.startswith(("model.", "data."))}),
         "--steps=2", "--warmup=1", *flags]
  proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_pipeline_benchmark(tokenizer_dir):
  (result,) = bench("--mode=pipeline", f"--config.data.tokenizer={tokenizer_dir}")
  assert result["bench"] == "lm_jax_input_pipeline" and result["tokens_per_s"] > 0
  assert result["corpus_tokens"] > 500_000


def test_prepare_benchmark_and_its_datasets_peer(tokenizer_dir):
  """--mode=prepare --peer on 1 MB of generated text: lm_jax.prepare and HF datasets' map
  with a tokenizers WordPiece of the same vocabulary size, on all cores each."""
  ours, theirs, ratio = bench("--mode=prepare", "--corpus_mb=1", "--peer",
                              f"--config.data.tokenizer={tokenizer_dir}")
  assert ours["bench"] == "lm_jax_prepare" and theirs["bench"] == "hf_datasets_prepare"
  assert ours["corpus_mb"] == theirs["corpus_mb"] == 1.0
  assert ours["workers"] == theirs["workers"] == os.cpu_count()
  assert ours["shards"] >= 2 * ours["workers"]  # every worker had work
  # Blocks of whole sentences, at least seq_len - 3 = 61 tokens unless a document ends.
  assert ours["tokens"] > 150_000
  assert ours["tokens"] / 64 / 2 < ours["examples"] <= ours["tokens"] / 61 + ours["documents"]
  assert theirs["examples"] > 0 and theirs["vocab_size"] <= 8000
  for side in (ours, theirs):
    assert side["mb_per_s"] > 0 and side["cpu_s"] > 0
  assert ratio["lm_jax_over_datasets"] == round(ours["mb_per_s"] / theirs["mb_per_s"], 2)
