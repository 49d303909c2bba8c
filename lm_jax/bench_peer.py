"""The PyTorch peer of `lm_jax.bench`: what a user would run instead.

HF transformers BertForMaskedLM of the same size, the same batch and
sequence length, AdamW, measured the way ../shared/bench/peer_gpu.py does it:
on CUDA with bf16 autocast, SDPA attention, fused AdamW and torch.compile;
on CPU in float32, eager. Called by bench.py with a JSON spec; prints one
JSON line. Needs torch and transformers (test-only dependencies of lm_jax).
"""
import json
import sys
import time

import torch
import transformers

from lm_jax.families.bert import transformer_flops


def main(spec):
  m = spec["model"]
  cuda = torch.cuda.is_available()
  dev = "cuda" if cuda else "cpu"
  cfg = transformers.BertConfig(
      vocab_size=m["vocab_size"], hidden_size=m["hidden_size"],
      num_hidden_layers=m["num_hidden_layers"], num_attention_heads=m["num_attention_heads"],
      intermediate_size=m["intermediate_size"], max_position_embeddings=m["max_position_embeddings"],
      type_vocab_size=m["type_vocab_size"], attn_implementation="sdpa")
  torch.manual_seed(0)
  model = transformers.BertForMaskedLM(cfg).to(dev)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
  run = torch.compile(model) if cuda else model
  b, t = spec["batch_size"], spec["seq_len"]
  ids = torch.randint(5, cfg.vocab_size, (b, t), device=dev)
  labels = torch.where(torch.rand(b, t, device=dev) < 0.15, ids, -100)
  inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)

  def step():
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=cuda):
      loss = run(**inputs).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

  sync = torch.cuda.synchronize if cuda else (lambda: None)
  for _ in range(spec["warmup"]):
    step()
  sync()
  start = time.perf_counter()
  for _ in range(spec["steps"]):
    step()
  sync()
  seconds = (time.perf_counter() - start) / spec["steps"]

  n = sum(p.numel() for p in model.parameters())
  emb = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
  # transformer_flops reads attribute-style config keys.
  fpt = transformer_flops(type("M", (), m), t, n, emb)
  tps = b * t / seconds
  peak = spec["peak_tflops"]
  print(json.dumps(dict(
      bench=f"hf_torch_bert_h{m['hidden_size']}_l{m['num_hidden_layers']}_s{t}_b{b}",
      step_ms=round(seconds * 1e3, 2), tokens_per_s=round(tps),
      mfu=float(f"{tps * fpt / (peak * 1e12):.4g}") if peak else None,
      peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
      device=torch.cuda.get_device_name() if cuda else "cpu",
      torch=torch.__version__, transformers=transformers.__version__,
      compiled=cuda, autocast_bf16=cuda)), flush=True)


if __name__ == "__main__":
  main(json.loads(sys.argv[1]))
