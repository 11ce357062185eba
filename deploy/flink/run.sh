#!/usr/bin/env bash
# Runs the callqa streaming job on Flink (embedded local cluster by default; pass
# --flink_master=host:8081 for a real one). Extra arguments go to `callqa run`.
#   ./deploy/flink/run.sh --kafka_topic=callqa.audio-chunks.v1 --output_dir=/data/callqa
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
jar="$("$root/deploy/flink/setup.sh")"
# the embedded Flink cluster's ports on 127.0.0.1 (Beam's own gRPC ports cannot be: docs/runners.md)
export FLINK_CONF_DIR="${FLINK_CONF_DIR:-$root/deploy/flink/conf}"
exec "$root/.venv/bin/callqa" run --runner=FlinkRunner --flink_master='[local]' \
  --flink_job_server_jar="$jar" --environment_type=LOOPBACK --streaming \
  --max_bundle_time_mills=100 "$@"
