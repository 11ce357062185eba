#!/usr/bin/env bash
# Makes stand-ins for the three images the Dockerfiles start from, on a machine that reaches
# only the package registries (no Docker Hub, no ghcr), in podman's image store:
#   localhost/callqa-python-base:3.11-bookworm  Debian 12 from its mirror (mmdebstrap):
#                                               python3 (3.11) + venv, ca-certificates
#   localhost/beam-boot:2.77.0                  /opt/apache/beam/boot built from Beam's Go
#                                               module (go install …/python/container@v2.77.0)
#   localhost/uv:<pin>                          /uv, the uv of deploy/lock/callqa.txt (.venv's)
# Then: ./deploy/images/build.sh cpu $(./deploy/images/local-bases.sh --build-args)
# Only the CPU image: the GPU one starts from nvidia/cuda. Files are cached under
# ${CALLQA_HOME:-~/.cache/callqa}/images; an image already in the store is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
beam_version=2.77.0
uv_version="$(sed -n 's/^uv==\([^ ]*\).*/\1/p' deploy/lock/callqa.txt)"
python_base=localhost/callqa-python-base:3.11-bookworm
beam_boot="localhost/beam-boot:$beam_version"
uv_image="localhost/uv:$uv_version"
if [ "${1:-}" = "--build-args" ]; then
  echo "--build-arg PYTHON_IMAGE=$python_base --build-arg BEAM_SDK_IMAGE=$beam_boot" \
    "--build-arg UV_IMAGE=$uv_image"
  exit 0
fi
cache="${CALLQA_HOME:-$HOME/.cache/callqa}/images"
mkdir -p "$cache"
need=""
command -v podman >/dev/null || need="$need podman"
command -v runc >/dev/null || need="$need runc"
command -v mmdebstrap >/dev/null || need="$need mmdebstrap"
if [ -n "$need" ]; then
  apt-get install -y -q $need >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q $need >/dev/null; }
fi
have() { podman image exists "$1"; }
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

if ! have "$python_base"; then
  tar="$cache/debian-bookworm-python3.tar"
  if [ ! -s "$tar" ]; then
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
      --aptopt='APT::Install-Recommends "false"' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/man/*' --format=tar bookworm "$tar.tmp" \
      http://deb.debian.org/debian
    mv "$tar.tmp" "$tar"
  fi
  podman import --quiet --change 'CMD ["python3"]' "$tar" "$python_base" >/dev/null
fi

if ! have "$beam_boot"; then
  boot="$cache/beam-boot-$beam_version"
  if [ ! -x "$boot" ]; then
    GOBIN="$ctx/bin" CGO_ENABLED=0 go install \
      "github.com/apache/beam/sdks/v2/python/container@v$beam_version"
    mv "$ctx/bin/container" "$boot"
  fi
  mkdir -p "$ctx/beam"
  cp "$boot" "$ctx/beam/boot"
  src="$(go env GOMODCACHE)/github.com/apache/beam/sdks/v2@v$beam_version"
  cp "$src/LICENSE" "$ctx/beam/LICENSE"
  printf 'FROM scratch\nCOPY beam/ /opt/apache/beam/\n' > "$ctx/Containerfile.beam"
  podman build --quiet -f "$ctx/Containerfile.beam" -t "$beam_boot" "$ctx" >/dev/null
fi

if ! have "$uv_image"; then
  got="$(.venv/bin/uv --version | cut -d' ' -f2)"
  if [ "$got" != "$uv_version" ]; then
    echo "local-bases: .venv has uv $got, the lock pins $uv_version: run deploy/local/setup.sh" >&2
    exit 1
  fi
  cp .venv/bin/uv "$ctx/uv"
  printf 'FROM scratch\nCOPY uv /uv\n' > "$ctx/Containerfile.uv"
  podman build --quiet -f "$ctx/Containerfile.uv" -t "$uv_image" "$ctx" >/dev/null
fi
echo "local-bases: $python_base $beam_boot $uv_image"
