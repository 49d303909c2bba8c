#!/usr/bin/env bash
# One GPU run of lm_jax's benchmarks (issue #17), inside 8 minutes:
#
#   bash bench/gpu_suite.sh [--smoke] [--only=NAME,...] OUT_DIR
#
# Workloads, each lm_jax against its PyTorch peer (python -m lm_jax.bench --peer),
# in this order (the most wanted first, in case the time runs out):
#   bert_s128   BERT-base MLM+NSP, seq 128, batch 256, bf16; plus a jax.profiler
#               trace of 3 steps (OUT_DIR/profile.tgz)
#   gpt2_s1024  GPT-2 124M, seq 1024, batch 16, bf16
#   elmo_s20    ELMo-size biLM (2 x 4096 cells -> 512, 32768-word vocabulary,
#               8192 sampled negatives), seq 20, batch 512, bf16
#   elmo_train  configs/elmo.py:original trained for 300 real steps on the
#               embedded corpus (its whole vocabulary, stateful as the config
#               says, bf16); tokens/s from the run's metrics.jsonl
#   bert_s512   BERT-base, seq 512, batch 64, bf16
#   pipeline    the input pipeline (lm_jax.bench --mode=pipeline), BERT batches
#               of 256 x 128, on the CPU while the GPU workloads run
# --smoke runs every workload with tiny sizes on the CPU (~7.5 minutes on 2
# loaded cores; tests/test_bench.py runs --smoke --only=bert_s128);
# --only=bert_s128,elmo_train runs some of them.
#
# OUT_DIR gets at most 8 files (what a device run hands back): results.jsonl
# (every JSON line of every workload, tagged "workload", and one "suite" line
# per workload: rc, seconds), logs.tgz (each workload's output, the ELMo
# run's metrics.jsonl), profile.tgz (split in 15 MiB parts if larger). Scratch
# (the ELMo workdir and its checkpoint) goes to a temporary directory.
# SUITE_SECONDS (default 480; --smoke: 1440) is the whole run's budget: a
# workload gets at most what is left, and is skipped when under 20 s is left.
#
# A bare GPU machine (jax, torch and transformers installed, no internet)
# lacks some of lm_jax's dependencies. Put their wheels in .whl/ at the repo
# root; this script installs them with --no-deps into /tmp/site. Fill .whl/
# on a machine with internet, once per version (Python 3.12, x86-64):
#
#   for p in ml_collections==1.1.0 PyYAML==6.0.4 \
#            grain==0.2.18 array_record==0.8.6 cloudpickle==3.1.3 portpicker==1.6.0 \
#            tensorflow-datasets==4.9.10 dm-tree==0.1.10 immutabledict==4.3.1 promise==2.3 \
#            simple_parsing==0.1.9 docstring_parser==0.18.0 tensorflow-metadata==1.21.0 \
#            googleapis-common-protos==1.76.0 toml==0.10.2 termcolor==3.3.0 wrapt==2.5.2; do
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl "$p"
#   done
#
# That is ml_collections, grain and tensorflow-datasets (setup.py) and what
# their metadata requires beyond what such a machine usually has (numpy,
# absl-py, protobuf, etils, psutil, requests, tqdm, pyarrow, attrs, six). The
# script first checks that everything lm_jax imports is there and names what
# is not; add the missing ones the same way (e.g. sentencepiece==0.2.3,
# tensorboardX==2.6.5, etils==1.15.0 with its epath needs fsspec,
# importlib_resources and zipp). gcsfs and google-cloud-storage (setup.py)
# serve gs:// paths only: the suite needs neither. Keep .whl/ under the device
# tool's 64 MiB carry limit. Then, through the device tool, from the repo root:
#
#   run(command="bash bench/gpu_suite.sh $OUT", carry=[".whl"], timeout_s=560)
set -uo pipefail

usage="usage: bash bench/gpu_suite.sh [--smoke] [--only=NAME,...] OUT_DIR"
SMOKE=0 ONLY="" OUT=""
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    --only=*) ONLY="${arg#--only=}" ;;
    -h|--help) sed -n '2,55p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $arg; $usage" >&2; exit 2 ;;
    *) OUT="$arg" ;;
  esac
done
[[ -n "$OUT" ]] || { echo "error: no OUT_DIR; $usage" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
LOGS="$(mktemp -d /tmp/lm_jax_suite_logs.XXXXXX)"  # tarred into OUT at the end
WORK="$(mktemp -d /tmp/lm_jax_suite_work.XXXXXX)"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
# The budget, and each workload's limit: a loaded CPU (smoke) is slower than a GPU.
SCALE=$(( SMOKE ? 3 : 1 ))
DEADLINE=$((SECONDS + ${SUITE_SECONDS:-$((480 * SCALE))}))

# --- wheels for what a bare GPU machine lacks ---------------------------------
if compgen -G "$REPO/.whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$REPO"/.whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

# --- the workloads' settings ---------------------------------------------------
BENCH=("$PY" -m lm_jax.bench)
if (( SMOKE )); then
  # Tiny shapes on the CPU: every code path, seconds each.
  STEPS=(--steps=2 --warmup=1 --peak_tflops=1000)  # a nominal peak: MFU on the CPU too
  ENC=(--config=configs/bert_base.py:tiny --config.model.hidden_size=64 --config.model.intermediate_size=128
       --config.model.vocab_size=1000 --config.model.max_position_embeddings=64)
  BERT_S128=("${ENC[@]}" --config.data.seq_len=32 --config.train.batch_size=8 --config.data.max_predictions_per_seq=5)
  BERT_S512=("${ENC[@]}" --config.data.seq_len=64 --config.train.batch_size=4 --config.data.max_predictions_per_seq=10)
  GPT2=(--config=configs/gpt2.py:tiny --config.model.n_embd=64 --config.model.vocab_size=1000
        --config.model.n_positions=64 --config.data.seq_len=64 --config.train.batch_size=4)
  ELMO=(--config=configs/elmo.py:tiny --config.model.vocab_size=1000 --config.model.lstm_dim=64
        --config.model.projection_dim=32 --config.model.n_negative_samples=64
        --config.data.seq_len=10 --config.train.batch_size=8)
  ELMO_TRAIN=(configs/elmo.py:tiny 6 2 --config.model.lstm_dim=64 --config.model.projection_dim=32
              --config.model.n_negative_samples=64 --config.data.seq_len=10 --config.train.batch_size=8)
  PIPELINE=(--config=configs/bert_base.py:tiny --config.model.vocab_size=1000
            --config.train.batch_size=16 --steps=5 --warmup=1)
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""  # the CPU, even on a GPU machine
else
  # The peer runs while lm_jax's process, which ran first, still holds its memory pool.
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}"
  STEPS=(--steps=20 --warmup=3)
  BERT_S128=(--config=configs/bert_base.py:base --config.train.batch_size=256)
  BERT_S512=(--config=configs/bert_base.py:base --config.data.seq_len=512 --config.train.batch_size=64
             --config.data.max_predictions_per_seq=80)
  GPT2=(--config=configs/gpt2.py:small --config.train.batch_size=16)
  ELMO=(--config=configs/elmo.py:original --config.model.vocab_size=32768 --config.train.batch_size=512
        --config.model.dtype=bfloat16)
  ELMO_TRAIN=(configs/elmo.py:original 300 50 --config.model.dtype=bfloat16)
  PIPELINE=(--config=configs/bert_base.py:tiny --config.train.batch_size=256 --steps=50 --warmup=5)
fi

# --- preflight: everything lm_jax imports, named when missing -----------------
"$PY" - > "$LOGS/env.json" <<'EOF' || { cat "$LOGS/env.json"; echo "error: lm_jax's dependencies are missing (above); add their wheels to .whl/ (this script's header)" >&2; exit 1; }
import importlib.metadata, importlib.util, json, platform, sys
# module: distribution. Found, not imported (seconds saved); jax is, for the devices.
mods = {"jax": "jax", "flax": "flax", "optax": "optax", "orbax": "orbax-checkpoint", "grain": "grain",
        "ml_collections": "ml_collections", "sentencepiece": "sentencepiece", "tokenizers": "tokenizers",
        "safetensors": "safetensors", "tensorboardX": "tensorboardX", "h5py": "h5py", "absl": "absl-py",
        "etils": "etils", "yaml": "PyYAML", "torch": "torch", "transformers": "transformers",
        "tensorflow_datasets": "tensorflow-datasets"}  # the last only for data.tfds_name: no stop
found, missing = {}, []
for module, dist in mods.items():
  if importlib.util.find_spec(module) is None:
    missing.append(dist)
    continue
  try:
    found[dist] = importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    found[dist] = "?"
devices = [d.device_kind for d in __import__("jax").devices()] if "jax" in found else []
print(json.dumps(dict(suite="env", python=platform.python_version(), devices=devices,
                      versions=found, missing=missing)))
sys.exit(1 if [m for m in missing if m != "tensorflow-datasets"] else 0)
EOF
tee -a "$RESULTS" < "$LOGS/env.json"

# --- running one workload -------------------------------------------------------
selected() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }

# run NAME LIMIT_S CMD...: CMD under a timeout (at most what is left of the
# budget), its output in LOGS/NAME.log, its JSON lines into results.jsonl.
run() {
  local name=$1 limit=$2 left start rc
  shift 2
  selected "$name" || return 0
  left=$((DEADLINE - SECONDS)) limit=$((limit * SCALE))
  if (( left < 20 )); then
    echo "{\"suite\": \"$name\", \"rc\": null, \"skipped\": \"out of time\"}" | tee -a "$RESULTS"
    return 0
  fi
  (( limit > left )) && limit=$left
  start=$SECONDS
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  grep -E '^\{.*\}$' "$LOGS/$name.log" | sed "s/^{/{\"workload\": \"$name\", /" | tee -a "$RESULTS"
  echo "{\"suite\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - start)), \"limit_s\": $limit}" \
    | tee -a "$RESULTS"
  (( rc == 0 )) || tail -n 5 "$LOGS/$name.log"
}

# The ELMo vocabulary the embedded corpus gives: the specials and every distinct
# word, so that model.vocab_size matches the one the run builds.
corpus_vocab_size() {
  "$PY" - <<'EOF'
from lm_jax import config as config_lib
from lm_jax.data import elmo_vocab, sources
data = config_lib.base_config().data
words = elmo_vocab.count_words(elmo_vocab.tokenized_sentences(sources.documents(data, "train"), False))
print(len(elmo_vocab.SPECIALS) + len(words))
EOF
}

# The ELMo run: train, then one JSON line from its metrics.jsonl (the first
# logged interval holds the compilation, so the median of the others).
elmo_train() {  # CONFIG STEPS LOG_EVERY OVERRIDES...
  local config=$1 steps=$2 log_every=$3 vocab
  shift 3
  vocab=$(corpus_vocab_size) || return 1
  "$PY" -m lm_jax.main --config="$config" --workdir="$WORK/elmo" --config.model.vocab_size="$vocab" \
    --config.data.stateful=True \
    --config.train.steps="$steps" --config.train.log_every="$log_every" \
    --config.train.eval_every=0 --config.train.checkpoint_every="$steps" "$@" || return $?
  cp "$WORK/elmo/metrics.jsonl" "$LOGS/elmo_train_metrics.jsonl"
  "$PY" - "$WORK/elmo/metrics.jsonl" "$vocab" <<'EOF'
import json, statistics, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if "tokens_per_s" in r]
steady = rows[1:] or rows
print(json.dumps(dict(bench="lm_jax_elmo_train", steps=rows[-1]["step"], vocab_size=int(sys.argv[2]),
                      tokens_per_s=round(statistics.median(r["tokens_per_s"] for r in steady)),
                      first_interval_tokens_per_s=round(rows[0]["tokens_per_s"]),
                      loss_first=rows[0]["loss"], loss_last=rows[-1]["loss"])))
EOF
}
export -f elmo_train corpus_vocab_size  # run's timeout starts them in a new bash
export PY WORK LOGS

# The input pipeline needs only the CPU: it runs beside the GPU workloads.
if selected pipeline; then
  (export JAX_PLATFORMS=cpu; run pipeline 300 "${BENCH[@]}" --mode=pipeline "${PIPELINE[@]}") &
  PIPELINE_PID=$!
fi
run bert_s128 200 "${BENCH[@]}" "${BERT_S128[@]}" --peer "${STEPS[@]}" \
  --profile_dir="$WORK/profile" --profile_steps=3
run gpt2_s1024 150 "${BENCH[@]}" "${GPT2[@]}" --peer "${STEPS[@]}"
run elmo_s20 120 "${BENCH[@]}" "${ELMO[@]}" --peer "${STEPS[@]}"
run elmo_train 150 bash -c 'elmo_train "$@"' elmo_train "${ELMO_TRAIN[@]}"
run bert_s512 150 "${BENCH[@]}" "${BERT_S512[@]}" --peer "${STEPS[@]}"
[[ -n "${PIPELINE_PID:-}" ]] && wait "$PIPELINE_PID"

# --- what comes back: at most 8 files -----------------------------------------------
if [[ -d "$WORK/profile" ]]; then
  tar -czf "$OUT/profile.tgz" -C "$WORK" profile
  if (( $(stat -c %s "$OUT/profile.tgz") > 15 * 2**20 )); then  # the device tool's 16 MiB a file
    split -b 15M -d -a 1 "$OUT/profile.tgz" "$OUT/profile.tgz.part" && rm "$OUT/profile.tgz"
    ls "$OUT"/profile.tgz.part* | sed -n '6,$p' | xargs -r rm  # 5 parts at most
  fi
fi
tar -czf "$OUT/logs.tgz" -C "$LOGS" .
rm -rf "$WORK" "$LOGS"
echo "suite done in ${SECONDS}s: $(grep -c '"suite": ' "$RESULTS") suite lines in $RESULTS"
