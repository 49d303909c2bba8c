"""`python -m lm_jax.bench` runs the real step and the PyTorch peer (CPU here)."""
import json
import os
import subprocess
import sys

from conftest import REPO, TINY_FLAGS, cli_args


def bench(*flags):
  cmd = [sys.executable, "-m", "lm_jax.bench", f"--config={REPO}/configs/bert_base.py:tiny",
         *cli_args({k: v for k, v in TINY_FLAGS.items() if k.startswith(("model.", "data."))}),
         "--steps=2", "--warmup=1", *flags]
  proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_step_benchmark_with_peer():
  ours, peer, ratio = bench("--peer", "--peak_tflops=1000")
  assert ours["bench"].startswith("lm_jax_bert") and peer["bench"].startswith("hf_torch_bert")
  for r in (ours, peer):
    assert r["step_ms"] > 0 and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1
  # Both sides count the same FLOPs per token, from the same formula.
  assert abs(ours["mfu"] / ours["tokens_per_s"] - peer["mfu"] / peer["tokens_per_s"]) < 1e-9
  assert ours["params"] > 0 and abs(ratio["lm_jax_over_peer"]
                                    - ours["tokens_per_s"] / peer["tokens_per_s"]) < 1e-2


def test_pipeline_benchmark(tokenizer_dir):
  (result,) = bench("--mode=pipeline", f"--config.data.tokenizer={tokenizer_dir}")
  assert result["bench"] == "lm_jax_input_pipeline" and result["tokens_per_s"] > 0
  assert result["corpus_tokens"] > 500_000
