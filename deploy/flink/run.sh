#!/usr/bin/env bash
# Runs the callqa streaming job on Flink. Extra arguments go to `callqa run`.
#   ./deploy/flink/run.sh --kafka_topic=callqa.audio-chunks.v1 --output_dir=/data/callqa
# By default on the job server's embedded cluster ('[local]', SDK workers in this process).
# On a session cluster (deploy/flink/cluster.sh start prints these two), the SDK workers are
# the worker pool's processes and the job runs at --parallelism (default 2):
#   FLINK_MASTER=127.0.0.1:8081 BEAM_WORKER_POOL=127.0.0.1:50000 ./deploy/flink/run.sh ...
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
jar="$("$root/deploy/flink/setup.sh")"
if [ -n "${FLINK_MASTER:-}" ]; then
  where=(--flink_master="$FLINK_MASTER" --environment_type=EXTERNAL
    --environment_config="${BEAM_WORKER_POOL:-127.0.0.1:50000}" --parallelism=2)
else
  # the embedded cluster's ports on 127.0.0.1 (Beam's own gRPC ports cannot be: docs/runners.md)
  export FLINK_CONF_DIR="${FLINK_CONF_DIR:-$root/deploy/flink/conf}"
  where=(--flink_master='[local]' --environment_type=LOOPBACK)
fi
exec "$root/.venv/bin/callqa" run --runner=FlinkRunner --flink_job_server_jar="$jar" \
  "${where[@]}" --streaming --max_bundle_time_mills=100 "$@"
