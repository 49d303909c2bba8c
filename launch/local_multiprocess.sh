#!/usr/bin/env bash
# N processes of one run on this machine, each with its own fake CPU devices:
# the multi-host code path (jax.distributed over gloo, per-process batches,
# collective Orbax checkpoints) without a cluster.
#
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS \
#       --config=configs/bert_base.py:tiny --workdir=runs/mp [--config.mesh.fsdp=-1 ...]
#
# Process 0 prints to this terminal; process i > 0 writes $WORKDIR/process_<i>.log
# (or ./process_<i>.log without --workdir). If one process fails, the others
# are stopped and its exit status is returned. PYTHON picks the interpreter;
# PORT the coordinator port (default: a free one).
set -euo pipefail

if [[ $# -lt 2 || ! "$1" =~ ^[0-9]+$ || ! "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS [lm_jax.main flags...]" >&2
  exit 2
fi
num_processes=$1
devices_per_process=$2
shift 2
python=${PYTHON:-python}
port=${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')}

log_dir=.
for arg in "$@"; do
  [[ "$arg" == --workdir=* ]] && log_dir=${arg#--workdir=}
done
mkdir -p "$log_dir"

export JAX_PLATFORMS=cpu
export XLA_FLAGS="--xla_force_host_platform_device_count=$devices_per_process ${XLA_FLAGS:-}"

pids=()
signal_all() {
  for pid in "${pids[@]}"; do
    [[ -z "$pid" ]] || kill "-$1" "$pid" 2>/dev/null || true
  done
}
# SIGTERM/Ctrl-C: every process saves a checkpoint at the same step and exits.
trap 'signal_all TERM; wait; exit 143' TERM INT

for ((i = 0; i < num_processes; i++)); do
  args=(-m lm_jax.main "$@" --coordinator_address="127.0.0.1:$port"
        --num_processes="$num_processes" --process_id="$i")
  if ((i == 0)); then
    "$python" "${args[@]}" &
  else
    "$python" "${args[@]}" >"$log_dir/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done

# The first failure decides the script's status. The others stop by themselves
# if they met the same error; any still running after 10 s would only wait for
# the failed one, so they are killed. (Polling keeps this to bash 3.2, macOS's.)
status=0
killer=
running=$num_processes
while ((running > 0)); do
  sleep 0.2
  for ((i = 0; i < num_processes; i++)); do
    pid=${pids[i]}
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      code=0
      wait "$pid" 2>/dev/null || code=$?
      pids[i]=
      running=$((running - 1))
      if ((code != 0 && status == 0)); then
        status=$code
        (sleep 10; signal_all KILL) &
        killer=$!
      fi
    fi
  done
done
[[ -z "$killer" ]] || kill "$killer" 2>/dev/null || true
exit "$status"
