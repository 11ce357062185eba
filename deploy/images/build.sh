#!/usr/bin/env bash
# Builds a callqa image from the repository root (docs/images.md):
#   ./deploy/images/build.sh cpu [build options]   # → callqa-worker:<version>
#   ./deploy/images/build.sh gpu [build options]   # → callqa-worker-gpu:<version>
# <version> is pyproject.toml's. CONTAINER_TOOL=podman (default docker). Extra options go to
# `build`, e.g. --build-arg PYTHON_IMAGE=... or --build-context asr-model=<Qwen3-ASR dir>.
set -euo pipefail
cd "$(dirname "$0")/../.."
kind="${1:?usage: build.sh cpu|gpu [build options]}"
shift
case "$kind" in
  cpu) name=callqa-worker ;;
  gpu) name=callqa-worker-gpu ;;
  *) echo "build.sh: the image is cpu or gpu, not '$kind'" >&2; exit 2 ;;
esac
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
source="$(git remote get-url origin 2>/dev/null || echo unknown)"
exec "${CONTAINER_TOOL:-docker}" build -f "deploy/images/worker-$kind.Dockerfile" \
  -t "$name:$version" --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg SOURCE="$source" "$@" .
