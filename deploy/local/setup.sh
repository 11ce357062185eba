#!/usr/bin/env bash
# Sets up a fresh machine for callqa: a Python venv with the package and its dev tools at the
# versions of deploy/lock/callqa.txt, the Kafka 4.4.0 jars (Maven Central), the Prism 2.77.0
# runner (go install) and kcat (Debian).
# Idempotent: a second run only checks. Needs python3 >= 3.11, java 17+, mvn, go.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Exactly the versions CI tested: deploy/lock/callqa.txt (hash-checked), installed by the uv it
# pins; then this checkout itself, editable. deploy/lock/update.sh re-resolves the lock.
uv_pin="$(grep -m1 -o '^uv==[^ ]*' deploy/lock/callqa.txt)"
.venv/bin/python -m pip install -q --disable-pip-version-check "$uv_pin"
.venv/bin/uv pip install -q --python .venv/bin/python --require-hashes -r deploy/lock/callqa.txt
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
# Debian tools: kcat (the non-Python producer in the README), espeak-ng + sox (speech for
# the ASR tests), chromium + a CJK font (the report).
missing=""
command -v kcat >/dev/null 2>&1 || missing="$missing kcat"
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
command -v sox >/dev/null 2>&1 || missing="$missing sox"
# The evaluation corpus: flite English voices, pocketsphinx-testdata's human English.
command -v flite >/dev/null 2>&1 || missing="$missing flite"
[ -d /usr/share/pocketsphinx/test/data/librivox ] || missing="$missing pocketsphinx-testdata"
# The report's screenshot test renders it in headless Chromium; CJK glyphs for its plots.
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing="$missing fonts-wqy-zenhei"
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  { $SUDO apt-get install -y -q $missing >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $missing >/dev/null; }; } \
    || echo "setup: could not install$missing (apt-get); tests that need them will fail" >&2
fi
.venv/bin/callqa kafka install
.venv/bin/callqa prism >/dev/null
.venv/bin/callqa models install >/dev/null
echo "setup: ready (venv .venv, cache ${CALLQA_HOME:-$HOME/.cache/callqa})"
