#!/usr/bin/env bash
# The same lm_jax.main command on every worker of a Cloud TPU VM pod.
#
# Prepare the corpus once, every worker taking its share of the shards
# (--task=I/N from the worker's number and the pod's worker count), straight
# to gs://; then train from it, the workdir on gs:// too:
#
#   TPU=my-v5p-256 ZONE=us-east5-a COMMAND=prepare launch/tpu_vm.sh \
#       --config=configs/bert_base.py:large --config.data.tfds_name=wikipedia/20230601.en \
#       --config.data.tfds_data_dir=gs://my-bucket/tfds --out=gs://my-bucket/wiki_bert
#   TPU=my-v5p-256 ZONE=us-east5-a launch/tpu_vm.sh \
#       --config=configs/bert_base.py:large --workdir=gs://my-bucket/runs/bert_large \
#       --config.data.prepared=gs://my-bucket/wiki_bert --config.mesh.fsdp=-1
#
# Each worker runs `python -m lm_jax.main FLAGS` (or lm_jax.prepare) from
# $REPO (default ~/lm_jax) with $REPO/.venv; the workers find each other
# through JAX's TPU cluster detection (jax.distributed.initialize with no
# arguments), so no coordinator flags are needed. The workdir must be one
# directory every worker sees: gs:// (or a Filestore/NFS mount). Worker 0
# prints the progress; every worker prints one layout line and writes
# ~/lm_jax_worker.log. A preempted prepare resumes when started again: the
# shards already committed are skipped.
#
#   TPU, ZONE      the TPU VM and its zone (required); PROJECT optional
#   REPO           the checkout on the workers (default: ~/lm_jax)
#   COMMAND        main (default: train) or prepare (lm_jax.prepare, one task a worker)
#   SETUP=1        first clone/update and install on every worker (alone: only
#                  that): GIT_URL (default: this checkout's origin), GIT_REF (main)
set -euo pipefail

: "${TPU:?set TPU to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
repo=${REPO:-'~/lm_jax'}
gcloud_args=(compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all)
[[ -n "${PROJECT:-}" ]] && gcloud_args+=(--project="$PROJECT")

if [[ "${SETUP:-0}" == 1 ]]; then
  git_url=${GIT_URL:-$(git -C "$(dirname "$0")/.." remote get-url origin)}
  git_ref=${GIT_REF:-main}
  gcloud "${gcloud_args[@]}" --command="
    set -e
    [ -d $repo ] || git clone $(printf %q "$git_url") $repo
    cd $repo && git fetch -q origin && git checkout -q $(printf %q "$git_ref") && git pull -q --ff-only
    python3 -m venv .venv && . .venv/bin/activate
    pip install -q -U pip && pip install -q -e . 'jax[tpu]'"
  (($#)) || exit 0  # set up only
fi

# Environment for a pod: the TPU backend (and the host CPU, no GPU probing),
# libtpu and TensorFlow logs kept to warnings.
env_setup="export JAX_PLATFORMS=tpu,cpu TPU_STDERR_LOG_LEVEL=2 TPU_MIN_LOG_LEVEL=2 TF_CPP_MIN_LOG_LEVEL=2"
flags=$(printf '%q ' "$@")
command=${COMMAND:-main}
case "$command" in
  main) run="python -m lm_jax.main $flags" ;;
  prepare)  # this worker's number and the pod's worker count, from the TPU VM's metadata
    metadata='curl -s -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes'
    run="i=\$($metadata/agent-worker-number) && n=\$($metadata/worker-network-endpoints | tr , '\\n' | wc -l) && JAX_PLATFORMS=cpu python -m lm_jax.prepare $flags --task=\$i/\$n" ;;
  *) echo "error: COMMAND=$command is not main or prepare." >&2; exit 2 ;;
esac
gcloud "${gcloud_args[@]}" --command="
  set -o pipefail
  cd $repo && . .venv/bin/activate && $env_setup
  $run 2>&1 | tee ~/lm_jax_worker.log"
