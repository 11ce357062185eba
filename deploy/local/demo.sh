#!/usr/bin/env bash
# README command 1: set up, then run the streaming demo end to end on embedded defaults
# (local Kafka + Prism + synthetic calls → Iceberg tables in out/demo), printing a summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
./deploy/local/setup.sh
exec .venv/bin/callqa demo "$@"
