#!/usr/bin/env bash
# Keeps the streaming job running without a human: runs `callqa run ARGS...` and starts it
# again whenever it dies (a crash, kill -9, the OOM killer), with backoff. The job resumes from
# its checkpoints, so a restart loses and duplicates nothing (README, Delivery guarantee).
#
#   deploy/local/supervise.sh --streaming --kafka_topic=calls --output_dir=/data/callqa ...
#
# Each run is its own process group; after it ends, whatever it started (Prism, SDK workers)
# is killed before the next start. Backoff: 1 s, doubling to SUPERVISE_MAX_BACKOFF_S (60),
# back to 1 s after a run that lasted SUPERVISE_HEALTHY_S (120). A clean exit (0: a bounded
# run finished) ends the supervisor too. SIGTERM or SIGINT stops the job and the supervisor.
# CALLQA: the command that runs the CLI (default: this checkout's .venv/bin/callqa).
# Under systemd use deploy/systemd/callqa-stream.service instead (Restart=always).
set -uo pipefail
cd "$(dirname "$0")/../.."
read -r -a CMD <<<"${CALLQA:-.venv/bin/callqa}"
MAX_BACKOFF_S=${SUPERVISE_MAX_BACKOFF_S:-60}
HEALTHY_S=${SUPERVISE_HEALTHY_S:-120}
job=""
stopping=0

log() { echo "supervise: $(date -u +%FT%TZ) $*" >&2; }

# The options as logged: client settings (they may hold credentials) are not shown.
shown=()
for arg in "$@"; do
  case "$arg" in
    --kafka_client_config=*) shown+=("--kafka_client_config=(hidden)") ;;
    --iceberg_catalog_config=*) shown+=("--iceberg_catalog_config=(hidden)") ;;
    *) shown+=("$arg") ;;
  esac
done

stop() {
  stopping=1
  if [ -n "$job" ]; then
    log "stopping the job (process group $job)"
    kill -TERM -- "-$job" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$job" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$job" 2>/dev/null
  fi
  exit 0
}
trap stop TERM INT

backoff=1
while :; do
  started=$(date +%s)
  setsid "${CMD[@]}" run "$@" &
  job=$!
  log "job started (pid $job): ${CMD[*]} run ${shown[*]}"
  wait "$job"
  status=$?
  kill -KILL -- "-$job" 2>/dev/null  # what the run left behind: Prism, workers
  [ "$stopping" = 1 ] && exit 0
  if [ "$status" = 0 ]; then
    log "job finished (exit 0)"
    exit 0
  fi
  ran=$(($(date +%s) - started))
  [ "$ran" -ge "$HEALTHY_S" ] && backoff=1
  log "job exited with status $status after ${ran} s; restarting in ${backoff} s"
  sleep "$backoff" &
  wait $!
  backoff=$((backoff * 2 > MAX_BACKOFF_S ? MAX_BACKOFF_S : backoff * 2))
done
