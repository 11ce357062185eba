#!/usr/bin/env bash
# README command 2 (and .ci/run): set up, then lint, type-check, check the import layers and
# run every test that needs no GPU (unit + integration on a real Kafka broker and Prism).
set -euo pipefail
cd "$(dirname "$0")/../.."
./deploy/local/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
