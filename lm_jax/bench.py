r"""Speed and memory of the real train step, side by side with the PyTorch peer.

  python -m lm_jax.bench --config=configs/bert_base.py [--steps=20] [--peer]
  python -m lm_jax.bench --config=configs/bert_base.py:tiny --mode=pipeline

`--mode=step` (default) builds the model and the jitted, sharded train step
from the config exactly as training does, feeds synthetic batches, warms up,
and prints one JSON line: step_ms, tokens_per_s, mfu, peak device memory.
`--peer` then runs the matching HF transformers model on PyTorch in a
subprocess (lm_jax/bench_peer.py) on the same machine and prints the ratio.

`--mode=pipeline` measures the input pipeline on the config's real data
(tokenisation, packing, masking, Grain threads): can it feed the step?

MFU = tokens/s x model FLOPs per token / peak FLOP/s, with the FLOPs of the
full model as in the peer benchmark, the same formula for both sides:
  6 * (N_non-embedding + V * d)   (matmuls forward + backward; the tied MLM
                                   decoder over every position)
  + 12 * L * T * d                (attention scores and values, fwd + bwd)
lm_jax runs the MLM decoder only at the masked positions, so it does less
arithmetic than that formula counts: compare tokens/s, and read MFU as
"tokens/s in units of the peak".
"""
import json
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from lm_jax import cli, config as config_lib, families, parallel, state, train
from lm_jax import workdir as workdir_lib
from lm_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                          lock_config=True)
_MODE = flags.DEFINE_enum("mode", "step", ["step", "pipeline"], "What to measure.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps (or batches, in pipeline mode).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation, caches).")
_PEER = flags.DEFINE_bool("peer", False, "Also run the PyTorch peer and print the ratio.")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak dense FLOP/s of one device, in "
                           "TFLOP/s, for MFU; 0 = known accelerators' bf16 peak.")

# Dense bf16 peak per device (TFLOP/s), by jax device_kind.
PEAK_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H200": 989.0, "NVIDIA A100-SXM4-80GB": 312.0,
               "TPU v5p": 459.0, "TPU v5 lite": 197.0, "TPU v4": 275.0}


def _peak_memory_gib():
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return round(peak / 2**30, 3) if peak else None


def bench_step(config):
  """Times the real train step; returns the result dict."""
  family = families.get(config.model)
  if family.synthetic_batch is None:
    raise UserError(f"lm_jax.bench has no synthetic batch for model.family={config.model.family!r} "
                    "yet; bench a family whose record has one (bert).")
  mesh = parallel.make_mesh(config.mesh)
  rule_table = parallel.rules(config.mesh)
  ms = state.ModelState(config, mesh, rule_table,
                        train.make_optimizer(config.train, config_lib.schedule_steps(config)))
  with parallel.activate(mesh, rule_table):
    step_fn = train.make_train_step(ms, config, mesh, rule_table)
    params, opt_state = ms.init(config.seed)
    batch = parallel.host_to_global(family.synthetic_batch(config, np.random.default_rng(0)),
                                    mesh, rule_table)
    for i in range(_WARMUP.value):
      params, opt_state, m = step_fn(params, opt_state, batch, jnp.int32(i))
    jax.block_until_ready(m)
    start = time.perf_counter()
    for i in range(_STEPS.value):
      params, opt_state, m = step_fn(params, opt_state, batch, jnp.int32(i))
    jax.block_until_ready(m)
    seconds = (time.perf_counter() - start) / _STEPS.value
  num_params = sum(x.size for x in jax.tree.leaves(params))
  tokens = config.train.batch_size * config.data.seq_len
  fpt = family.flops_per_token(config, params)
  device = jax.devices()[0]
  peak = _PEAK.value or PEAK_TFLOPS.get(device.device_kind)
  tps = tokens / seconds
  return dict(bench=f"lm_jax_{config.model.family}_h{config.model.hidden_size}_l"
                    f"{config.model.num_hidden_layers}_s{config.data.seq_len}_b{config.train.batch_size}",
              step_ms=round(seconds * 1e3, 2), tokens_per_s=round(tps),
              mfu=float(f"{tps * fpt / (peak * 1e12 * jax.device_count()):.4g}") if peak else None,
              flops_per_token=fpt, params=num_params, peak_memory_gib=_peak_memory_gib(),
              dtype=config.model.dtype, devices=jax.device_count(), device=device.device_kind,
              jax=jax.__version__)


def bench_peer(config, peak_tflops):
  """Runs lm_jax/bench_peer.py in a subprocess; returns its JSON result."""
  spec = dict(model=config.model.to_dict(), seq_len=config.data.seq_len,
              batch_size=config.train.batch_size, steps=_STEPS.value, warmup=_WARMUP.value,
              max_predictions=config.data.max_predictions_per_seq, peak_tflops=peak_tflops)
  proc = subprocess.run([sys.executable, "-m", "lm_jax.bench_peer", json.dumps(spec)],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    cli.fail(f"The PyTorch peer failed ({tail[0]}); install torch and transformers to use --peer.")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_pipeline(config, workdir):
  """Batches/s of the real input pipeline, in tokens/s like the step."""
  docs = families.get(config.model).read(config.data, "train")
  start = time.perf_counter()
  tok = workdir_lib.load_or_train_tokenizer(config, workdir, docs)
  data = families.make_examples(config.model, docs, tok, config.data, config.seed)
  prepare_s = time.perf_counter() - start
  batches = data.batches(config.train.batch_size, 0, _WARMUP.value + _STEPS.value,
                         threads=config.data.worker_threads)
  for _ in range(_WARMUP.value):
    next(batches)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    next(batches)
  seconds = (time.perf_counter() - start) / _STEPS.value
  return dict(bench="lm_jax_input_pipeline", batch_ms=round(seconds * 1e3, 2),
              tokens_per_s=round(config.train.batch_size * config.data.seq_len / seconds),
              prepare_s=round(prepare_s, 2), corpus_tokens=data.num_tokens,
              threads=config.data.worker_threads)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  with cli.user_errors():
    families.validate(config)
    if _MODE.value == "pipeline":
      with tempfile.TemporaryDirectory() as workdir:
        print(json.dumps(bench_pipeline(config, workdir)), flush=True)
      return
    ours = bench_step(config)
    print(json.dumps(ours), flush=True)
    if _PEER.value:
      peak = _PEAK.value or PEAK_TFLOPS.get(jax.devices()[0].device_kind) or 0.0
      peer = bench_peer(config, peak)
      print(json.dumps(peer), flush=True)
      print(json.dumps(dict(bench="ratio", lm_jax_over_peer=round(
          ours["tokens_per_s"] / peer["tokens_per_s"], 3))), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, config_flag="config"))
