"""The Dataflow launch profiles (``deploy/dataflow/launch.sh``), checked offline.

In the ``dataflow`` environment (``deploy/lock/dataflow.txt``: the job plus Beam's GCP extra),
``dataflow_job.py`` builds the real streaming and batch pipelines with the launcher's options
and the DataflowRunner's ``--dry_run=True``, and writes the job Dataflow would receive. The
tests read that job: its type, the project's stages, Runner v2 and Streaming Engine, the GPU,
one SDK process per VM (so one ASR model per GPU), the workers' container image, no resource
hints. Nothing is submitted and nothing reaches the network (the helper refuses sockets).
What a real launch adds (credentials, quotas, the image's contents, the job running) is
outside this test: docs/runners.md#dataflow.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from beam_jobs.services.local import locked_environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "deploy" / "dataflow" / "launch.sh"
HELPER = Path(__file__).with_name("dataflow_job.py")
GPU_IMAGE = "europe-west4-docker.pkg.dev/callqa-test/callqa/worker-gpu:test"
CPU_IMAGE = "europe-west4-docker.pkg.dev/callqa-test/callqa/worker-cpu:test"
LAUNCH_ENV = {
    "CALLQA_GCP_PROJECT": "callqa-test",
    "CALLQA_GCP_REGION": "europe-west4",
    "CALLQA_GCS_BUCKET": "callqa-test-bucket",
    "CALLQA_DATAFLOW_IMAGE": GPU_IMAGE,
    "CALLQA_DATAFLOW_CPU_IMAGE": CPU_IMAGE,
}
GPU = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
#: The composites ``build_pipeline`` applies, in both jobs (with ASR).
STAGES = (
    "DecodeAndValidate", "GroupChunks", "SegmentSpeech", "Transcribe", "AnalyzeTranscripts",
    "ValidateTranscripts", "WriteTranscripts", "AggregateCalls", "ValidateCalls", "WriteCalls",
    "FlattenDeadLetters", "ValidateDeadLetters", "WriteDeadLetters", "ValidateQuarantine",
    "WriteQuarantine",
)  # fmt: skip
#: The Kafka edges: the streaming job's only.
KAFKA_STAGES = ("ReadAudioChunks", "PublishTranscripts", "PublishCallState", "CommitOffsets")
PROFILES = {
    # job type, machine, image, service options, ASR device
    "streaming": ("JOB_TYPE_STREAMING", "g2-standard-8", GPU_IMAGE, [GPU], "cuda"),
    "batch": ("JOB_TYPE_BATCH", "n2-standard-8", CPU_IMAGE, [], "cpu"),
}


def launch_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLQA_GCP", "CALLQA_GCS"))}
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    return {**env, **LAUNCH_ENV, **overrides}


def profile(mode: str) -> list[str]:
    """The launcher's options for ``mode``, as it would pass them to callqa."""
    out = subprocess.run(
        ["bash", str(LAUNCH), "--print", mode],
        env=launch_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


def model_dirs(tmp: Path) -> dict[str, Path]:
    """Model directories the ASR stage accepts at build time (it reads their layout only):
    Qwen3-ASR for the GPU, the embedded CTranslate2 Whisper for the CPU."""
    hf, ct2 = tmp / "qwen3-asr-hf", tmp / "whisper-ct2"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "qwen3_asr"}')
    ct2.mkdir()
    for name in ("model.bin", "tokenizer.json", "config.json"):
        (ct2 / name).write_text("{}")
    return {"streaming": hf, "batch": ct2}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """{mode: what ``dataflow_job.py`` wrote}, both jobs built side by side."""
    t0 = time.monotonic()
    python = locked_environment("dataflow", with_callqa=True)
    made_s = time.monotonic() - t0
    tmp = tmp_path_factory.mktemp("dataflow")
    models = model_dirs(tmp)
    extra = {
        # a broker that does not exist: the dry run must not look for it
        "streaming": ["--kafka_bootstrap_servers=kafka.invalid:9092"],
        "batch": [f"--recordings={tmp / 'recordings' / 'call-1.wav'}"],
    }
    runs = {}
    for mode in PROFILES:
        out = tmp / f"{mode}.json"
        argv = [
            str(python), str(HELPER), mode, str(out), *profile(mode),
            f"--asr={models[mode]}", f"--output_dir={tmp / 'out'}", *extra[mode],
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=launch_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        runs[mode] = (proc, out)
    dumps = {}
    for mode, (proc, out) in runs.items():
        log, _ = proc.communicate(timeout=150)
        assert proc.returncode == 0, f"the {mode} dry run failed:\n{log[-4000:]}"
        dumps[mode] = json.loads(out.read_text())
    sys.stderr.write(
        f"test_dataflow: environment {made_s:.1f} s, both dry runs "
        f"{time.monotonic() - t0 - made_s:.1f} s\n"
    )
    return dumps


def stages(dump: dict[str, Any]) -> list[str]:
    """The composites applied at the top of the pipeline, by name."""
    pipeline = dump["pipeline"]
    transforms = pipeline["components"]["transforms"]
    (root,) = pipeline["rootTransformIds"]
    return [transforms[t]["uniqueName"] for t in transforms[root]["subtransforms"]]


def problems(dump: dict[str, Any], mode: str) -> list[str]:
    """What in the dumped job differs from ``mode``'s profile (empty: nothing)."""
    job_type, machine, image, service_options, device = PROFILES[mode]
    env = dump["job"]["environment"]
    experiments = set(env.get("experiments", []))
    found = []
    if dump["job"]["type"] != job_type:
        found.append(f"job type {dump['job']['type']}, not {job_type}")
    for needed in ["use_runner_v2", "no_use_multiple_sdk_containers"] + (
        ["enable_streaming_engine"] if mode == "streaming" else []
    ):
        if needed not in experiments:
            found.append(f"experiment {needed} missing")
    for unwanted in ("disable_runner_v2", "use_multiple_sdk_containers"):
        if unwanted in experiments:
            found.append(f"experiment {unwanted} set")
    if env.get("serviceOptions", []) != service_options:
        found.append(f"service options {env.get('serviceOptions')}, not {service_options}")
    (pool,) = env["workerPools"]
    if pool.get("machineType") != machine:
        found.append(f"machine type {pool.get('machineType')}, not {machine}")
    # one environment, hence one image; one SDK process per VM: one ASR model per GPU
    containers = [(c["containerImage"], c.get("useSingleCorePerContainer", False))
                  for c in pool["sdkHarnessContainerImages"]]  # fmt: skip
    if containers != [(image, True)]:
        found.append(f"SDK containers {containers}, not one {image} per VM")
    # right fitting (per-stage resource hints) is batch-only and excludes worker_accelerator
    for name, environment in dump["pipeline"]["components"]["environments"].items():
        if environment.get("resourceHints"):
            found.append(f"environment {name} has resource hints {environment['resourceHints']}")
    options = env["sdkPipelineOptions"]["options"]
    if options.get("asr_device") != device or not options.get("asr_queues"):
        found.append(f"ASR device {options.get('asr_device')} / queues {options.get('asr_queues')}")
    if options.get("asr_large_model"):
        found.append("asr_large_model: a model server per VM, with one SDK process")
    names = stages(dump)
    expected = STAGES + (KAFKA_STAGES if mode == "streaming" else ("ReadRecordings",))
    absent = KAFKA_STAGES if mode == "batch" else ("ReadRecordings",)
    found += [f"stage {s} missing" for s in expected if s not in names]
    found += [f"stage {s} present" for s in absent if s in names]
    transforms = dump["pipeline"]["components"]["transforms"].values()
    if not any(t["uniqueName"] == "Transcribe/RunInference" for t in transforms):
        found.append("no RunInference in Transcribe")
    return found


@pytest.mark.parametrize("mode", list(PROFILES))
def test_the_job_matches_its_profile(jobs: dict[str, dict[str, Any]], mode: str) -> None:
    assert problems(jobs[mode], mode) == []


def test_the_jobs_are_built_from_this_checkout(jobs: dict[str, dict[str, Any]]) -> None:
    assert {d["beam_jobs"] for d in jobs.values()} == {str(ROOT / "beam_jobs")}


def _drop_experiment(name: str) -> Callable[[dict[str, Any]], None]:
    def change(dump: dict[str, Any]) -> None:
        dump["job"]["environment"]["experiments"].remove(name)

    return change


def _hint_accelerator(dump: dict[str, Any]) -> None:
    for environment in dump["pipeline"]["components"]["environments"].values():
        environment["resourceHints"] = {"beam:resources:accelerator:v1": "dHlwZTpudmlkaWEtbDQ="}


def _batch_type(dump: dict[str, Any]) -> None:
    dump["job"]["type"] = "JOB_TYPE_BATCH"


def _no_gpu(dump: dict[str, Any]) -> None:
    dump["job"]["environment"]["serviceOptions"] = []


def _one_process_per_cpu(dump: dict[str, Any]) -> None:
    for c in dump["job"]["environment"]["workerPools"][0]["sdkHarnessContainerImages"]:
        c["useSingleCorePerContainer"] = False


def _without_transcribe(dump: dict[str, Any]) -> None:
    pipeline = dump["pipeline"]
    transforms = pipeline["components"]["transforms"]
    root = transforms[pipeline["rootTransformIds"][0]]
    root["subtransforms"] = [
        t for t in root["subtransforms"] if transforms[t]["uniqueName"] != "Transcribe"
    ]


@pytest.mark.parametrize(
    "change",
    [
        _drop_experiment("no_use_multiple_sdk_containers"),
        _drop_experiment("enable_streaming_engine"),
        _drop_experiment("use_runner_v2"),
        _hint_accelerator,
        _batch_type,
        _no_gpu,
        _one_process_per_cpu,
        _without_transcribe,
    ],
    ids=[
        "several-sdk-processes",
        "no-streaming-engine",
        "no-runner-v2",
        "accelerator-hint",
        "batch-type",
        "no-gpu",
        "process-per-cpu",
        "no-transcribe",
    ],
)
def test_a_wrong_streaming_job_is_caught(
    jobs: dict[str, dict[str, Any]], change: Callable[[dict[str, Any]], None]
) -> None:
    """The checks fail where the profile or the graph is wrong."""
    dump = copy.deepcopy(jobs["streaming"])
    change(dump)
    assert problems(dump, "streaming")


def test_the_launcher_asks_for_what_is_missing() -> None:
    proc = subprocess.run(
        ["bash", str(LAUNCH), "--print", "streaming"],
        env=launch_env(CALLQA_GCS_BUCKET=""), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "set CALLQA_GCS_BUCKET" in proc.stderr
