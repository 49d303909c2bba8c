"""GPT-2: packed causal-LM training, exact resume, HF export/import with equal
logits, cached generation and the cross-document attention mask.

CPU, float32, tiny shapes; HF models are built from configs (no hub access).
"""
import json
import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import REPO, override, prepared_examples
import lm_jax
from lm_jax import config as config_lib, export, interop, train
from lm_jax.data import packing, tokenizer as tokenizer_lib
from lm_jax.errors import UserError
from lm_jax.models import gpt
from test_interop import perturbed

TOLERANCE = 1e-4
TEXTS = ["Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years.",
         "She was the youngest.", "Mr. Knightley laughed"]
TINY = {"model.n_embd": 64, "model.n_positions": 64, "data.seq_len": 64, "train.batch_size": 8,
        "train.log_every": 1, "train.eval_every": 20, "train.eval_steps": 2,
        "train.checkpoint_every": 20, "train.warmup_steps": 5}


def gpt_config(tokenizer_dir, **overrides):
  from configs import gpt2
  c = gpt2.get_config("tiny")
  c.data.tokenizer = tokenizer_dir
  return override(c, {**TINY, **overrides})


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return {m["step"]: m["loss"] for m in records if "loss" in m}, records


def run_module(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer_dir):
  """40 steps of configs/gpt2.py:tiny (made smaller) from the command line."""
  workdir = str(tmp_path_factory.mktemp("gpt"))
  flags = [f"--config.{k}={v}" for k, v in {**TINY, "train.steps": 40}.items()]
  result = run_module("lm_jax.main", f"--config={REPO}/configs/gpt2.py:tiny",
                      f"--workdir={workdir}", f"--config.data.tokenizer={tokenizer_dir}", *flags)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_loss_falls_and_metrics(trained):
  train_losses, records = losses(trained)
  curve = [train_losses[s] for s in sorted(train_losses)]
  assert len(curve) == 40 and np.mean(curve[-5:]) < np.mean(curve[:5]) - 1.0, curve
  assert {"perplexity", "accuracy", "tokens_per_s", "grad_norm"} <= set(records[0])
  evals = [m for m in records if "eval_loss" in m]
  assert [m["step"] for m in evals] == [20, 40] and evals[1]["eval_loss"] < evals[0]["eval_loss"]
  assert abs(evals[1]["eval_perplexity"] - np.exp(evals[1]["eval_loss"])) < 1e-3 * evals[1]["eval_perplexity"]


def test_exact_resume(tmp_path, tokenizer_dir):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  common = {"train.schedule_steps": 16, "train.eval_every": 0, "train.checkpoint_every": 8,
            "model.scan_layers": True}
  train.run(gpt_config(tokenizer_dir, **common, **{"train.steps": 16}), straight)
  train.run(gpt_config(tokenizer_dir, **common, **{"train.steps": 8}), resumed)
  train.run(gpt_config(tokenizer_dir, **common, **{"train.steps": 16}), resumed)
  a, _ = losses(straight)
  b, _ = losses(resumed)
  assert sorted(b) == list(range(1, 17))
  assert [a[s] for s in range(9, 17)] == [b[s] for s in range(9, 17)]  # bitwise, with dropout


def test_packed_examples_keep_documents_apart(tokenizer_dir, tmp_path):
  tok = tokenizer_lib.load(tokenizer_dir)
  docs = ["Emma was rich. She was clever.", "Harriet smiled.", "Mr. Elton bowed and left."]
  (tmp_path / "docs.txt").write_text("\n".join(docs) + "\n")  # a document a line
  data = prepared_examples(gpt_config(tokenizer_dir, **{"data.files": str(tmp_path / "docs.txt")}),
                           str(tmp_path / "corpus"))
  stream = np.concatenate([[tok.sep_id, *sum(tok.encode(packing.split_sentences(d)), [])]
                           for d in docs])
  assert len(data.records) == 1 and data.num_tokens == len(stream) - len(docs)
  ex = data.example(0)  # the whole stream fits one window, padded
  n = len(stream) - 1
  assert np.array_equal(ex["input_ids"][:n], stream[:-1]) and np.array_equal(ex["labels"][:n], stream[1:])
  assert ex["weights"].sum() == n and (ex["input_ids"][n:] == tok.pad_id).all()
  starts = np.flatnonzero(np.diff(ex["segment_ids"][:n])) + 1  # a document starts at its [SEP]
  assert (ex["input_ids"][starts] == tok.sep_id).all() and ex["segment_ids"][:n].max() == 3
  assert (ex["segment_ids"][n:] == 0).all()


def test_segment_mask_blocks_cross_document_attention():
  cfg = config_lib.gpt2_model(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2)
  model = gpt.GPT2LMHeadModel(cfg, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 50, (1, 5)), rng.integers(0, 50, (1, 7))
  segments = jnp.array([[1] * 5 + [2] * 7])
  packed = model(jnp.concatenate([a, b], 1), segments)["logits"]
  other_a = model(jnp.concatenate([rng.integers(0, 50, (1, 5)), b], 1), segments)["logits"]
  alone = model(jnp.asarray(b))["logits"]
  np.testing.assert_allclose(packed[:, 5:], alone, atol=1e-5)   # B as if unpacked
  np.testing.assert_array_equal(packed[:, 5:], other_a[:, 5:])  # A cannot reach B
  unmasked = model(jnp.concatenate([a, b], 1))["logits"]        # one segment: A does reach B
  assert np.abs(unmasked[:, 5:] - alone).max() > 1e-3


def hf_logits(model_dir, texts):
  """AutoTokenizer's padded batch and AutoModelForCausalLM's logits for it."""
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  batch = tok(texts, padding=True, return_tensors="pt")
  model, info = transformers.AutoModelForCausalLM.from_pretrained(model_dir, output_loading_info=True)
  assert type(model).__name__ == "GPT2LMHeadModel" and not any(info.values()), info
  with torch.no_grad():
    logits = model.eval()(**batch).logits.numpy()
  return batch["input_ids"].numpy(), batch["attention_mask"].numpy(), logits


def assert_same_logits(ours, theirs, mask):
  diff = np.abs(np.where(mask[..., None].astype(bool), ours - theirs, 0)).max()
  assert diff < TOLERANCE, diff
  return diff


def test_export_gives_transformers_the_same_logits(trained, tmp_path):
  out = str(tmp_path / "hf")
  export.export(trained, out)
  ids, mask, theirs = hf_logits(out, TEXTS)
  model = lm_jax.load(trained)
  assert [list(r[m.astype(bool)]) for r, m in zip(ids, mask)] == model.token_ids(TEXTS)
  assert_same_logits(model.logits(TEXTS), theirs, mask)
  # lm_jax reads its own export back to the same logits.
  assert_same_logits(lm_jax.load(out).logits(TEXTS), theirs, mask)


def test_scanned_perturbed_export_and_hf_import(tmp_path, tokenizer_dir):
  """Every tensor away from its initial value, scanned layers, both directions."""
  cfg = gpt_config(tokenizer_dir, **{"model.scan_layers": True, "model.n_layer": 3})
  tok = tokenizer_lib.load(tokenizer_dir)
  model = gpt.GPT2LMHeadModel(cfg.model, rngs=nnx.Rngs(1))
  params = perturbed(nnx.to_pure_dict(nnx.state(model)), seed=2)
  out = str(tmp_path / "exported")
  interop.save_pretrained(out, cfg.model, params, tok)
  ids, mask, theirs = hf_logits(out, TEXTS)
  nnx.update(model, params)
  ours = model(jnp.asarray(ids), jnp.asarray(mask))["logits"]
  export_diff = assert_same_logits(np.asarray(ours), theirs, mask)

  # HF -> lm_jax: a GPT2LMHeadModel of transformers' own initialisation.
  torch.manual_seed(0)
  hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4,
      bos_token_id=tok.sep_id, eos_token_id=tok.sep_id, pad_token_id=tok.pad_id))
  with torch.no_grad():
    for p in hf_model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  source = str(tmp_path / "hf")
  hf_model.save_pretrained(source)
  interop.FAMILIES["gpt2"].save_tokenizer(tok, source, cfg.model)
  _, _, theirs = hf_logits(source, TEXTS)
  import_diff = assert_same_logits(lm_jax.load(source).logits(TEXTS), theirs, mask)
  print(f"max |logit diff|: export {export_diff:.2e}, import {import_diff:.2e}")


def test_init_from_hf_starts_training_from_the_hf_weights(trained, tmp_path, tokenizer_dir):
  out, workdir = str(tmp_path / "hf"), str(tmp_path / "continued")
  export.export(trained, out)
  train.run(gpt_config("", **{"init.from_hf": out, "train.steps": 1, "train.learning_rate": 1e-12,
                              "train.eval_every": 0, "model.scan_layers": True}), workdir)
  before, after = lm_jax.load(trained), lm_jax.load(workdir)
  assert after.config.model.n_embd == 64
  np.testing.assert_allclose(after.logits(TEXTS), before.logits(TEXTS), atol=TOLERANCE)


def uncached_greedy(model, prompt_ids, steps):
  ids = list(prompt_ids)
  for _ in range(steps):
    ids.append(int(model.logits([ids])[0, -1].argmax()))
  return ids[len(prompt_ids):]


def test_cached_generation_equals_recomputing(trained):
  model = lm_jax.load(trained)
  rows = model.token_ids(TEXTS)
  cached = model.generate(rows, max_new_tokens=6)  # left-padded batch, one cache
  for row, got in zip(rows, cached):
    want = uncached_greedy(model, row, 6)
    if model.tokenizer.sep_id in want:
      want = want[:want.index(model.tokenizer.sep_id)]
    assert got == want
  texts = model.generate(TEXTS[:2], max_new_tokens=5, temperature=0.9, top_k=20, top_p=0.9, seed=3)
  assert texts == model.generate(TEXTS[:2], max_new_tokens=5, temperature=0.9, top_k=20,
                                 top_p=0.9, seed=3)
  assert all(isinstance(t, str) for t in texts)
  with pytest.raises(UserError, match="positions but the model has 64"):
    model.generate(TEXTS, max_new_tokens=60)


def test_filter_logits_keeps_top_k_and_nucleus():
  from lm_jax.inference import causal as decoding
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  kept = lambda **kw: np.isfinite(np.asarray(decoding.filter_logits(logits, **kw)))[0].tolist()
  assert kept(top_k=2, top_p=1.0) == [True, True, False, False]
  assert kept(top_k=0, top_p=0.7) == [True, True, False, False]  # 0.5 < 0.7 <= 0.8
  assert kept(top_k=0, top_p=0.5) == [True, False, False, False]


def test_generate_cli(trained):
  result = run_module("lm_jax.generate", f"--workdir={trained}", "--prompt=Emma was",
                      "--prompt=She", "--max_new_tokens=4", "--temperature=0.7", "--top_k=10")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2 and lines[0].startswith("Emma was") and lines[1].startswith("She")
  bad = run_module("lm_jax.generate", f"--workdir={trained}", "--prompt=Emma", "--top_p=2")
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert "0 < top_p <= 1" in bad.stderr
