"""Helpers for integration tests: pick call ids per partition, run the job, read results."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2

from beam_jobs.pipeline import make_pipeline


def partition_of(call_id: str, partitions: int = 4) -> int:
    """The partition kafka-python's default partitioner gives this key."""
    return (murmur2(call_id.encode()) & 0x7FFFFFFF) % partitions


def call_ids_on(partition: int, count: int, prefix: str, partitions: int = 4) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < count:
        cid = f"{prefix}-{i:04d}"
        if partition_of(cid, partitions) == partition:
            out.append(cid)
        i += 1
    return out


def job_args(
    bootstrap: str, topic: str, out: Path, prism: str, *extra: str, streaming: bool = True
) -> list[str]:
    return [
        "--runner=PrismRunner",
        f"--prism_location={prism}",
        *(["--streaming"] if streaming else ["--bounded"]),
        f"--kafka_bootstrap_servers={bootstrap}",
        f"--kafka_topic={topic}",
        f"--kafka_group_id={topic}",
        f"--output_dir={out}",
        *extra,
    ]


@contextmanager
def streaming_job(argv: Sequence[str]) -> Any:
    """Run the streaming job in this process; cancel it on exit."""
    pipeline, _ = make_pipeline(list(argv))
    result = pipeline.run()
    try:
        yield result
    finally:
        result.cancel()


def kill_job_process(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 the job and every process it started (Prism, SDK workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)
