r"""Speed and memory of the real train step, side by side with the PyTorch peer.

  python -m lm_jax.bench --config=configs/bert_base.py [--steps=20] [--peer]
  python -m lm_jax.bench --config=configs/elmo.py:tiny --peer
  python -m lm_jax.bench --config=configs/bert_base.py:tiny --mode=pipeline
  python -m lm_jax.bench --config=configs/bert_base.py:tiny --mode=inference --peer
  python -m lm_jax.bench --config=configs/bert_base.py:tiny --mode=prepare --peer

Every family works (BERT, RoBERTa, ALBERT, ELECTRA, GPT-2, ELMo): its record
(lm_jax/families/) gives a synthetic batch of the config's shapes and the
model FLOPs per token (each family module documents its formula).

`--mode=step` (default) builds the model and the jitted, sharded train step
from the config exactly as training does (ELMo with data.stateful: the LSTM
state carried from step to step), feeds one synthetic batch, warms up, and
prints one JSON line: step_ms, tokens_per_s, mfu, peak device memory.
`--peer` then runs the matching PyTorch model (lm_jax/bench_peer.py: HF
transformers for the Transformer families, an nn.LSTM biLM for ELMo) in a
subprocess on the same machine and prints its line and the ratio.
`--profile_dir=DIR` also writes a jax.profiler trace of `--profile_steps`
steps (after the timed ones) to DIR, for TensorBoard or Perfetto.

`--mode=pipeline` measures the input pipeline on the config's real data
(tokenisation, packing, masking, Grain threads): can it feed the step?

`--mode=inference` measures what `lm_jax.load` returns: texts/s of
hidden_states and embed on --texts sentences, and (GPT-2) new tokens/s of
generate; `--peer` runs transformers' AutoModel / generate on the same
weights and texts (lm_jax/bench_inference.py says exactly what each side does).

`--mode=prepare` measures MB/s of lm_jax.prepare on data.files or
--corpus_mb MB of generated text, and with `--peer` HF datasets' batched
`map` with a `tokenizers` tokenizer on the same cores, as run_mlm.py does
(lm_jax/bench_prepare.py).

MFU = tokens/s x FLOPs per token / peak FLOP/s. The FLOPs per token are the
family's flops_per_token, one function of the config that the peer calls too,
so both sides count the same work. It counts the full model as the HF peer
computes it (e.g. the MLM decoder over every position); where lm_jax does
less (it decodes only the masked positions), compare tokens/s, and read MFU
as "tokens/s in units of the peak".

A mode is one function below (config -> JSON lines printed as they come),
listed in MODES.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from lm_jax import bench_inference, bench_prepare, cli, config as config_lib, families, parallel, state, train
from lm_jax import workdir as workdir_lib
from lm_jax.data import prepare as prepare_lib, prepared
from lm_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                          lock_config=True)
_MODE = flags.DEFINE_enum("mode", "step", ["step", "pipeline", "inference", "prepare"],  # the keys of MODES
                          "What to measure.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps (or batches, in pipeline mode).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation, caches).")
_PEER = flags.DEFINE_bool("peer", False, "Also run the PyTorch peer and print the ratio.")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak dense FLOP/s of one device, in "
                           "TFLOP/s, for MFU; 0 = known accelerators' bf16 peak.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", "", "Write a jax.profiler trace of "
                                   "--profile_steps steps (after the timed ones) here.")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 3, "Steps traced with --profile_dir.")
_TEXTS = flags.DEFINE_integer("texts", 2000, "Sentences encoded per call (inference mode).")
_INFERENCE_BATCH = flags.DEFINE_integer("inference_batch_size", 32,
                                        "Texts per batch on both sides (inference mode).")
_CORPUS_MB = flags.DEFINE_float("corpus_mb", 64.0, "MB of generated text to prepare when the "
                                "config names no data.files (prepare mode).")
_WORKERS = flags.DEFINE_integer("workers", 0, "Processes on both sides (prepare mode; 0: all "
                                "cores).")

# Dense bf16 peak per device (TFLOP/s), by jax device_kind.
PEAK_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H200": 989.0, "NVIDIA A100-SXM4-80GB": 312.0,
               "TPU v5p": 459.0, "TPU v5 lite": 197.0, "TPU v4": 275.0}


def emit(result):
  print(json.dumps(result), flush=True)


def _peak_memory_gib():
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return round(peak / 2**30, 3) if peak else None


def _peak_tflops():
  return _PEAK.value or PEAK_TFLOPS.get(jax.devices()[0].device_kind) or 0.0


def workload(config):
  """The workload's name, the same on both sides: family, sizes, seq_len, batch."""
  m = config.model
  if m.family == "elmo":
    size = f"p{m.projection_dim}_d{m.lstm_dim}_l{m.n_layers}_v{m.vocab_size}"
  else:
    size = f"h{config_lib.size(m, 'hidden_size')}_l{config_lib.size(m, 'num_hidden_layers')}"
  return f"{m.family}_{size}_s{config.data.seq_len}_b{config.train.batch_size}"


def bench_step(config):
  """Times the real train step; returns the result dict."""
  family = families.get(config.model)
  if family.synthetic_batch is None:
    what = config.model.get("task") or config.model.family
    raise UserError(f"lm_jax.bench has no synthetic batch for {what!r}; bench a pre-training "
                    f"family ({', '.join(sorted(families.FAMILIES))}).")
  mesh = parallel.make_mesh(config.mesh)
  rule_table = parallel.rules(config.mesh)
  ms = state.ModelState(config, mesh, rule_table,
                        train.make_optimizer(config.train, config_lib.schedule_steps(config)))
  with parallel.activate(mesh, rule_table):
    step_fn = train.make_train_step(ms, config, mesh, rule_table)
    params, opt_state = ms.init(config.seed)
    batch = parallel.host_to_global(family.synthetic_batch(config, np.random.default_rng(0)),
                                    mesh, rule_table)
    carry = train.initial_carry(config, mesh, rule_table)  # ELMo's LSTM state, else None
    carry = () if carry is None else (carry,)

    def run(first, n):
      nonlocal params, opt_state, carry
      for i in range(first, first + n):
        params, opt_state, _, *carry = step_fn(params, opt_state, batch, jnp.int32(i), *carry)
      jax.block_until_ready(params)

    run(0, _WARMUP.value)
    start = time.perf_counter()
    run(_WARMUP.value, _STEPS.value)
    seconds = (time.perf_counter() - start) / _STEPS.value
    if _PROFILE_DIR.value:
      with jax.profiler.trace(_PROFILE_DIR.value):
        run(_WARMUP.value + _STEPS.value, _PROFILE_STEPS.value)
  tokens = config.train.batch_size * config.data.seq_len
  fpt = family.flops_per_token(config, params)
  device = jax.devices()[0]
  peak = _peak_tflops()
  tps = tokens / seconds
  return dict(bench=f"lm_jax_{workload(config)}",
              step_ms=round(seconds * 1e3, 2), tokens_per_s=round(tps),
              mfu=float(f"{tps * fpt / (peak * 1e12 * jax.device_count()):.4g}") if peak else None,
              flops_per_token=fpt, params=sum(x.size for x in jax.tree.leaves(params)),
              peak_memory_gib=_peak_memory_gib(), dtype=config.model.dtype,
              devices=jax.device_count(), device=device.device_kind, jax=jax.__version__)


def bench_peer(config, peak_tflops):
  """Runs lm_jax/bench_peer.py in a subprocess; returns its JSON result."""
  spec = dict(config=dict(model=config.model.to_dict(), data=config.data.to_dict(),
                          train=dict(batch_size=config.train.batch_size)),
              workload=workload(config), steps=_STEPS.value, warmup=_WARMUP.value,
              peak_tflops=peak_tflops)
  # The peer imports lm_jax (for the shared FLOPs formula) but must leave the
  # accelerator to PyTorch.
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "lm_jax.bench_peer", json.dumps(spec)],
                        capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    cli.fail(f"The PyTorch peer failed: {tail[0]} (--peer needs torch and transformers).")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def step_mode(config):
  ours = bench_step(config)
  emit(ours)
  if _PEER.value:
    peer = bench_peer(config, _peak_tflops())
    emit(peer)
    emit(dict(bench="ratio", lm_jax=ours["bench"], peer=peer["bench"],
              lm_jax_over_peer=round(ours["tokens_per_s"] / peer["tokens_per_s"], 3)))


def pipeline_mode(config):
  """Batches/s of the real input pipeline on prepared data, in tokens/s like the step:
  data.prepared, else the config's input prepared first (prepare_s) into a temporary
  directory. Reads, masking and Grain threads, as training does."""
  if families.get(config.model).labelled:
    raise UserError("--mode=pipeline measures pre-training input; a fine-tuning config reads its "
                    "labelled records in memory.")
  with tempfile.TemporaryDirectory() as workdir:
    examples = families.get(config.model).examples
    corpus_dir = workdir_lib.corpus_dir(config, workdir)
    start = time.perf_counter()
    if not config.data.prepared:
      prepare_lib.prepare(config, corpus_dir, examples, workers=0, tokenizer=config.data.tokenizer)
    prepare_s = time.perf_counter() - start
    corpus = prepared.open(corpus_dir)
    tok = workdir_lib.load_or_train_tokenizer(config, workdir, corpus)
    data = examples(corpus.material(examples.LAYOUT, config.data.seq_len, "train"), tok,
                    config.data, config.seed)
    batches = data.batches(config.train.batch_size, 0, _WARMUP.value + _STEPS.value,
                           threads=config.data.worker_threads)
    for _ in range(_WARMUP.value):
      next(batches)
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      next(batches)
    seconds = (time.perf_counter() - start) / _STEPS.value
  emit(dict(bench="lm_jax_input_pipeline", batch_ms=round(seconds * 1e3, 2),
            tokens_per_s=round(config.train.batch_size * config.data.seq_len / seconds),
            prepare_s=round(prepare_s, 2), corpus_tokens=data.num_tokens,
            threads=config.data.worker_threads))


def inference_mode(config):
  bench_inference.inference_mode(config, _PEER.value, num_texts=_TEXTS.value,
                                 batch_size=_INFERENCE_BATCH.value, emit=emit)


def prepare_mode(config):
  bench_prepare.prepare_mode(config, _PEER.value, corpus_mb=_CORPUS_MB.value,
                             workers=_WORKERS.value, emit=emit)


MODES = {"step": step_mode, "pipeline": pipeline_mode, "inference": inference_mode,
         "prepare": prepare_mode}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  with cli.user_errors():
    families.validate(config)
    MODES[_MODE.value](config)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, config_flag="config"))
