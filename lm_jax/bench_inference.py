r"""Inference speed, side by side with transformers on PyTorch (lm_jax.bench --mode=inference).

  python -m lm_jax.bench --mode=inference --config=bert_base.py:tiny [--peer]
  python -m lm_jax.bench --mode=inference --config=gpt2.py:tiny --peer

The model has the config's architecture and freshly initialised weights;
the texts are the first --texts sentences of the embedded corpus's held-out
novel (Persuasion), in their own order. It prints JSON lines:

  encode     texts/s of `hidden_states(texts)` and of `embed(texts)` (mean
             pooling), all texts in one call (lm_jax sorts and buckets them);
  generate   (GPT-2) new tokens/s of greedy `generate` on the first
             --prompts texts' first 8 tokens, --new_tokens each.

Each is timed --repeats times after an untimed warm-up (compilation) and the
median is reported. `--peer` exports the same weights and tokenizer as an HF
directory and runs, in a subprocess on the same machine (CUDA when torch
sees a GPU), what a transformers user writes: `AutoModel` on batches of
--batch_size texts in their order (`tokenizer(batch, padding=True)`,
`last_hidden_state`, mean pooling for embed) under torch.inference_mode,
and `AutoModelForCausalLM.generate` (left padding, greedy) for GPT-2; then
one ratio line per workload (lm_jax / transformers).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax

from lm_jax import cli, families, inference, interop
from lm_jax.data import packing, sources, tokenizer as tokenizer_lib
from lm_jax.errors import UserError
from lm_jax.inference import causal, encoder

PROMPT_TOKENS = 8  # the tokens of each text a generation prompt keeps


def texts(n):
  """The first n sentences of the embedded held-out novel, as they come."""
  sentences = [s for d in sources.embedded_documents("eval") for s in packing.split_sentences(d)]
  return sentences[:n]


def timed(fn, repeats):
  """(median seconds of `repeats` calls of fn after an untimed one, its last result)."""
  result = fn()
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds), result


def _tokenizer(config, directory):
  """data.tokenizer, else a sentencepiece model of model.vocab_size trained on the corpus."""
  if config.data.tokenizer:
    return tokenizer_lib.load(config.data.tokenizer)
  sentences = [s for d in sources.embedded_documents("train") for s in packing.split_sentences(d)]
  return tokenizer_lib.train(sentences, directory, config.model.vocab_size)


def ours(model, sentences, batch_size, prompts, new_tokens, repeats):
  """{workload: result} of lm_jax's side."""
  device = jax.devices()[0].device_kind
  results = {}
  if isinstance(model, (encoder.Encoder, causal.CausalLM)):
    tokens = sum(len(r) for r in model.token_ids(sentences, truncation=True))
    calls = {"encode": lambda: model.hidden_states(sentences, batch_size=batch_size,
                                                   truncation=True)}
    if isinstance(model, encoder.Encoder):
      calls["embed"] = lambda: model.embed(sentences, batch_size=batch_size, truncation=True)
    for name, call in calls.items():
      seconds, _ = timed(call, repeats)
      results[name] = dict(texts_per_s=round(len(sentences) / seconds, 1),
                           tokens_per_s=round(tokens / seconds), texts=len(sentences))
  if isinstance(model, causal.CausalLM):
    rows = [r[:PROMPT_TOKENS] for r in model.token_ids(sentences[:prompts], truncation=True)]
    seconds, new = timed(lambda: model.generate(rows, max_new_tokens=new_tokens,
                                                batch_size=batch_size), repeats)
    count = sum(len(x) for x in new)
    results["generate"] = dict(new_tokens_per_s=round(count / seconds), new_tokens=count,
                               prompts=len(rows))
  return {k: dict(v, bench=f"lm_jax_{k}", batch_size=batch_size, device=device,
                  jax=jax.__version__) for k, v in results.items()}


def inference_mode(config, peer=False, num_texts=2000, batch_size=32, prompts=32, new_tokens=32,
                   repeats=3, emit=print):
  """Measures lm_jax's inference (and with `peer` transformers') on `config`'s model;
  emits one dict per result."""
  kind = families.get(config.model).inference
  if kind not in ("masked_lm", "causal_lm", "classifier"):
    raise UserError(f"lm_jax.bench --mode=inference measures Transformer encoders and GPT-2; "
                    f"model.family={config.model.family!r} has no transformers peer.")
  with tempfile.TemporaryDirectory() as tmp:
    tok = _tokenizer(config, os.path.join(tmp, "tokenizer"))
    model = inference.fresh(config, tok, seed=config.seed)
    sentences = texts(num_texts)
    mine = ours(model, sentences, batch_size, prompts, new_tokens, repeats)
    for result in mine.values():
      emit(result)
    if not peer:
      return
    hf_dir = os.path.join(tmp, "hf")
    interop.save_pretrained(hf_dir, config.model, model.params, tok)
    prompt_ids = None
    if isinstance(model, causal.CausalLM):
      prompt_ids = [r[:PROMPT_TOKENS] for r in model.token_ids(sentences[:prompts],
                                                                truncation=True)]
    spec = dict(hf_dir=hf_dir, texts=sentences, batch_size=batch_size, prompt_ids=prompt_ids,
                new_tokens=new_tokens, repeats=repeats, pad_id=tok.pad_id,
                max_length=model.max_length if isinstance(model, encoder.Encoder)
                else model.max_len)
    spec_path = os.path.join(tmp, "spec.json")
    with open(spec_path, "w") as f:
      json.dump(spec, f)
    # The peer leaves the accelerator to PyTorch: JAX there stays on the CPU.
    proc = subprocess.run([sys.executable, "-c", "import sys; from lm_jax import bench_inference; "
                           "bench_inference.peer_main(sys.argv[1])", spec_path],
                          capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if proc.returncode != 0:
      tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
      cli.fail(f"The transformers peer failed: {tail[0]} (--peer needs torch and transformers).")
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, result in theirs.items():
      emit(result)
      key = "new_tokens_per_s" if name == "generate" else "texts_per_s"
      emit(dict(bench="ratio", workload=name, lm_jax_over_transformers=round(
          mine[name][key] / result[key], 2)))


def peer_main(spec_path):
  """transformers on PyTorch, as a user writes it; prints {workload: result} as JSON."""
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  with open(spec_path) as f:
    spec = json.load(f)
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  device = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
  tok = transformers.AutoTokenizer.from_pretrained(spec["hf_dir"])
  sentences, b, repeats = spec["texts"], spec["batch_size"], spec["repeats"]
  results = {}
  common = dict(batch_size=b, device=device, threads=torch.get_num_threads(),
                torch=torch.__version__, transformers=transformers.__version__)

  model = transformers.AutoModel.from_pretrained(spec["hf_dir"]).to(dev).eval()
  if tok.pad_token is None:  # GPT-2: padding is masked, any id will do
    tok.pad_token_id = spec["pad_id"]

  def encode(pool):
    out = []
    with torch.inference_mode():
      for i in range(0, len(sentences), b):
        batch = tok(sentences[i:i + b], padding=True, truncation=True,
                    max_length=spec["max_length"], return_tensors="pt").to(dev)
        hidden = model(**batch).last_hidden_state
        if pool:
          weights = batch["attention_mask"][..., None].to(hidden.dtype)
          hidden = (hidden * weights).sum(1) / weights.sum(1)
        out.append(hidden.cpu().numpy())
    return out

  tokens = sum(len(x) for x in tok(sentences, truncation=True, max_length=spec["max_length"])
               ["input_ids"])
  for name, pool in (("encode", False), ("embed", True)):
    if name == "embed" and spec["prompt_ids"] is not None:
      continue  # lm_jax's CausalLM has no embed
    seconds, _ = timed(lambda pool=pool: encode(pool), repeats)
    results[name] = dict(bench=f"transformers_{name}",
                         texts_per_s=round(len(sentences) / seconds, 1),
                         tokens_per_s=round(tokens / seconds), texts=len(sentences), **common)

  if spec["prompt_ids"] is not None:
    lm = transformers.AutoModelForCausalLM.from_pretrained(spec["hf_dir"]).to(dev).eval()
    rows, pad = spec["prompt_ids"], spec["pad_id"]

    def generate():
      new = 0
      with torch.inference_mode():
        for i in range(0, len(rows), b):
          chunk = rows[i:i + b]
          width = max(len(r) for r in chunk)
          ids = torch.tensor([[pad] * (width - len(r)) + r for r in chunk], device=dev)
          mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk], device=dev)
          out = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=spec["new_tokens"],
                            do_sample=False, pad_token_id=pad)[:, width:]
          eos = lm.generation_config.eos_token_id
          for row in out.tolist():  # tokens up to the first end of document, as lm_jax counts
            new += row.index(eos) if eos in row else len(row)
      return new

    seconds, count = timed(generate, repeats)
    results["generate"] = dict(bench="transformers_generate",
                               new_tokens_per_s=round(count / seconds), new_tokens=count,
                               prompts=len(rows), **common)
  print(json.dumps(results), flush=True)
