#!/usr/bin/env bash
# Re-resolves the lock files under deploy/lock/ with uv (hashes, CPython 3.11, manylinux x86_64).
# A fresh machine installs exactly these versions: setup.sh (the job's .venv) from callqa.txt,
# the tests' own environments from the others (beam_jobs.services.local.locked_environment).
# Pins already in a lock file are kept unless asked: `./deploy/lock/update.sh --upgrade` or
# `--upgrade-package torch`. Commit the result with the test run that passed on it.
set -euo pipefail
cd "$(dirname "$0")/../.."
uv=.venv/bin/uv
compile() {
  local out="deploy/lock/$1"
  shift
  "$uv" pip compile -q "$@" --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --generate-hashes --no-header --output-file "$out" "${extra[@]}"
  echo "update: $out"
}
extra=("$@")
# the job, its ASR backends, QA, speech for tests, benchmarks and dev tools (README command 2)
compile callqa.txt pyproject.toml --extra dev --extra asr --extra embedded-asr --extra speech \
  --extra qa --extra bench
# Dataflow launches and their offline test (deploy/dataflow/): the job plus Beam's GCP extra
compile dataflow.txt pyproject.toml --extra dataflow
# Airflow for the DAGs of deploy/airflow (tests/integration/test_airflow_dag.py runs them)
compile airflow.txt deploy/airflow/requirements.in
