#!/usr/bin/env bash
# Launches callqa on Google Cloud Dataflow from the dataflow environment (deploy/lock/dataflow.txt,
# made on first use by beam_jobs.services.local.locked_environment).
#
#   deploy/dataflow/launch.sh streaming [callqa run options…]    the Kafka job, GPU profile
#   deploy/dataflow/launch.sh batch [callqa batch options…]      recordings, CPU profile
#   deploy/dataflow/launch.sh --print streaming|batch            the profile's options, one a line
#
# From the environment (nothing is hard-coded; credentials are gcloud's, never passed here):
#   CALLQA_GCP_PROJECT (or GOOGLE_CLOUD_PROJECT), CALLQA_GCP_REGION, CALLQA_GCS_BUCKET (temp and
#   staging files under gs://BUCKET/dataflow/), CALLQA_DATAFLOW_IMAGE (the workers' SDK container
#   image, with callqa, its lock and the model; CALLQA_DATAFLOW_CPU_IMAGE for the batch profile,
#   default the same), CALLQA_DATAFLOW_MAX_WORKERS (default 4).
# Options after the mode come last and win (a later --machine_type replaces the profile's).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

need() {
  if [ -z "${!1:-}" ]; then
    echo "launch.sh: set $1 ($2)" >&2
    exit 2
  fi
}

print=0
if [ "${1:-}" = "--print" ]; then
  print=1
  shift
fi
mode="${1:-}"
case "$mode" in
  streaming | batch) shift ;;
  *)
    echo "usage: launch.sh [--print] streaming|batch [callqa options…]" >&2
    exit 2
    ;;
esac

project="${CALLQA_GCP_PROJECT:-${GOOGLE_CLOUD_PROJECT:-}}"
CALLQA_GCP_PROJECT="$project"
need CALLQA_GCP_PROJECT "the Google Cloud project, or GOOGLE_CLOUD_PROJECT"
need CALLQA_GCP_REGION "the Dataflow region, e.g. us-central1"
need CALLQA_GCS_BUCKET "a bucket name for temp and staging files, without gs://"
need CALLQA_DATAFLOW_IMAGE "the workers' SDK container image, e.g. REGION-docker.pkg.dev/PROJECT/callqa/worker:TAG"

common=(
  --runner=DataflowRunner
  "--project=$project"
  "--region=$CALLQA_GCP_REGION"
  "--temp_location=gs://$CALLQA_GCS_BUCKET/dataflow/temp"
  "--staging_location=gs://$CALLQA_GCS_BUCKET/dataflow/staging"
  # Runner v2 (the portable worker: stateful DoFns, timers, the splittable Kafka source)
  --experiments=use_runner_v2
  "--max_num_workers=${CALLQA_DATAFLOW_MAX_WORKERS:-4}"
  # the image holds Beam, callqa and its locked dependencies: nothing staged but the job
  --sdk_location=container
)
if [ "$mode" = streaming ]; then
  profile=(
    "${common[@]}"
    --streaming
    --enable_streaming_engine
    # one NVIDIA L4 (24 GB) per VM, driver installed by Dataflow; right fitting (an
    # accelerator resource hint on the ASR stage alone) is batch-only and excludes this option
    --machine_type=g2-standard-8
    "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
    # one SDK process per VM, so one ASR model per GPU (RunInference shares it between the
    # process's threads); by default Dataflow starts a process per vCPU, each with its model
    --experiments=no_use_multiple_sdk_containers
    "--sdk_container_image=$CALLQA_DATAFLOW_IMAGE"
    # the image (CUDA, torch, the model) is large
    --disk_size_gb=100
    # decided here, where the job is built: the launching machine has no GPU
    --asr_device=cuda
    --asr_queues=1
  )
else
  profile=(
    "${common[@]}"
    --machine_type=n2-standard-8
    "--sdk_container_image=${CALLQA_DATAFLOW_CPU_IMAGE:-$CALLQA_DATAFLOW_IMAGE}"
    # one SDK process per VM, as on one machine: faster-whisper's decoders are native threads
    # (one per ASR queue) that the process spreads over the VM's CPUs
    --experiments=no_use_multiple_sdk_containers
    --asr_device=cpu
    # one queue per vCPU of a worker (the job would count the launching machine's CPUs);
    # with several workers, vCPUs x workers keeps them all decoding
    --asr_queues=8
  )
fi

if [ "$print" = 1 ]; then
  printf '%s\n' "${profile[@]}" "$@"
  exit 0
fi
# the environment holds this checkout, editable (made once: ~15 s, with uv)
python="$(PYTHONPATH="$root" "$root/.venv/bin/python" -c \
  'from beam_jobs.services.local import locked_environment as env; print(env("dataflow", with_callqa=True))')"
command=(run)
[ "$mode" = batch ] && command=(batch)
exec "$python" -m beam_jobs.cli "${command[@]}" "${profile[@]}" "$@"
