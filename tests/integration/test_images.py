"""The CPU worker image builds from its Dockerfile and runs the job's entry points.

Built with podman (rootful, runc) from the stand-in bases of deploy/images/local-bases.sh (a
Debian 12 root from the mirror, Beam's boot from its Go module, the lock's uv), in a private
image store that is reset at the end. The Dockerfile itself is the one production builds with
the default (Docker Hub, ghcr) bases. The GPU image is not built here (torch's CUDA layers are
gigabytes); tests/unit/deploy/test_images.py checks its Dockerfile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.image]  # pytest -m image: not in the default run

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "callqa-worker:0.1.0"
# The host's CA bundle: a TLS-inspecting proxy's CA reaches uv in the build (UV_SYSTEM_CERTS).
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for podman with a private store, reset afterwards unless it is
    ``$CALLQA_IMAGE_STORE`` (kept, and an image already there is not built again)."""
    if os.geteuid() != 0:
        pytest.skip("building images needs root here (rootful podman, apt-get)")
    kept = os.environ.get("CALLQA_IMAGE_STORE")
    home = Path(kept) if kept else tmp_path_factory.mktemp("podman")
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "containers.conf"
    # runc: crun refuses this machine's hybrid cgroup v1/v2 layout; the limits: podman's
    # defaults raise RLIMIT_NOFILE/NPROC, which the sandbox forbids even to root.
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    storage = home / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{home}/root"\nrunroot = "{home}/run"\n'
    )
    env = dict(
        os.environ,
        CONTAINERS_CONF=str(conf),
        CONTAINERS_STORAGE_CONF=str(storage),
        CONTAINER_TOOL="podman",
    )
    yield env
    if not kept:
        subprocess.run(["podman", "system", "reset", "--force"], env=env, capture_output=True)


@pytest.fixture(scope="module")
def cpu_image(podman_env: dict[str, str]) -> str:
    if subprocess.run(["podman", "image", "exists", IMAGE], env=podman_env).returncode == 0:
        return IMAGE
    subprocess.run([ROOT / "deploy/images/local-bases.sh"], env=podman_env, check=True)
    args = subprocess.run(
        [ROOT / "deploy/images/local-bases.sh", "--build-args"],
        env=podman_env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    mount = ["--volume", f"{HOST_CA}:{HOST_CA}:ro"] if HOST_CA.exists() else []
    subprocess.run(
        [ROOT / "deploy/images/build.sh", "cpu", "--quiet", *args, *mount],
        env=podman_env, check=True,
    )  # fmt: skip
    return IMAGE


def _run(env: dict[str, str], image: str, *argv: str, entrypoint: str | None = None) -> str:
    cmd = ["podman", "run", "--rm", "--network=none"]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    out = subprocess.run([*cmd, image, *argv], env=env, capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr


@pytest.mark.timeout(1800)
def test_cpu_image_runs_the_job_entry_points(podman_env: dict[str, str], cpu_image: str) -> None:
    env = podman_env
    meta = json.loads(
        subprocess.run(["podman", "image", "inspect", cpu_image], env=env,
                       check=True, capture_output=True, text=True).stdout
    )[0]["Config"]  # fmt: skip
    assert meta["Entrypoint"] == ["/opt/apache/beam/boot"]
    assert meta["User"] == "10001:10001"
    assert meta["Labels"]["org.opencontainers.image.version"] == "0.1.0"

    assert "run the streaming job" in _run(env, cpu_image, "--help", entrypoint="callqa")
    # the baked model, verified at build time, found where --asr=embedded looks (as user 10001)
    out = _run(env, cpu_image, "models", "install", entrypoint="callqa")
    assert out.strip() == "/opt/callqa/models/whisper-base-ct2"
    loaded = _run(env, cpu_image, "-c", (
        "from faster_whisper import WhisperModel; "
        "WhisperModel('/opt/callqa/models/whisper-base-ct2', device='cpu', compute_type='int8'); "
        "import apache_beam, great_expectations, pyiceberg; "
        "print('loaded', apache_beam.__version__)"
    ), entrypoint="python")  # fmt: skip
    assert "loaded 2.77.0" in loaded
    # Beam's boot checks this before it starts the worker
    assert "Version: 2.77.0" in _run(env, cpu_image, "-m", "pip", "show", "apache-beam",
                                     entrypoint="python")  # fmt: skip
    assert "semi_persist_dir" in _run(env, cpu_image, "-h")  # boot's flags
    # the CPU image holds no torch and no build tools
    probe = "import importlib.util as u; print(u.find_spec('torch'))"
    assert _run(env, cpu_image, "-c", probe, entrypoint="python").strip() == "None"
    assert _run(env, cpu_image, "-c", "command -v gcc cc uv || echo none",
                entrypoint="sh").strip() == "none"  # fmt: skip


# Beam's worker pool on one loopback port (worker_pool_main listens on every interface), each
# worker started by the image's entrypoint, boot, as it would be under a portable runner.
_POOL = """
import sys
from concurrent.futures import ThreadPoolExecutor
import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc as api
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
server = grpc.server(ThreadPoolExecutor(4))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
api.add_BeamFnExternalWorkerPoolServicer_to_server(
    BeamFnExternalWorkerPoolServicer(container_executable="/opt/apache/beam/boot"), server)
server.start()
server.wait_for_termination()
"""

# Runs on the host against Prism; the Map runs in the container's SDK worker.
_JOB = """
import os, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

def where(_):
    import faster_whisper  # the image's packages
    return os.environ.get("CALLQA_HOME"), os.getuid(), faster_whisper.__name__

opts = PipelineOptions(["--runner=PrismRunner", "--prism_location=" + sys.argv[1],
    "--environment_type=EXTERNAL", "--environment_config=127.0.0.1:" + sys.argv[2],
    "--sdk_location=container", "--experiments=disable_prism_server_singleton"])
with beam.Pipeline(options=opts) as p:
    assert_that(p | beam.Create([1, 2]) | beam.Map(where),
                equal_to([("/opt/callqa", 10001, "faster_whisper")] * 2))
print("job done")
"""


@pytest.mark.timeout(1800)
def test_boot_starts_sdk_workers_for_a_runner(
    podman_env: dict[str, str], cpu_image: str, prism_location: str
) -> None:
    from beam_jobs.services.local import free_port

    port = str(free_port())
    name = f"callqa-pool-{port}"
    pool = subprocess.Popen(
        ["podman", "run", "--rm", "--name", name, "--network=host", "--entrypoint", "python",
         cpu_image, "-c", _POOL, port],
        env=podman_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        job = subprocess.run(
            [sys.executable, "-c", _JOB, prism_location, port],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        subprocess.run(["podman", "stop", "--time", "5", name], env=podman_env,
                       capture_output=True)  # fmt: skip
        pool_log = pool.communicate(timeout=60)[0]
    assert job.returncode == 0 and "job done" in job.stdout, job.stderr[-3000:] + pool_log[-3000:]
