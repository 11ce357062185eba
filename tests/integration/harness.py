"""Helpers for integration tests: pick call ids per partition, run the job, read results."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2

from beam_jobs import warehouse
from beam_jobs.demo.producer import (
    CallAudio,
    call_events,
    interleave,
    new_producer,
    send_events,
    synthetic_call,
)
from beam_jobs.pipeline import submit


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


def call_state_topic(topic: str) -> str:
    """The call-state topic of a job reading ``topic`` through ``job_args``: the job creates it
    compacted."""
    return f"{topic}.call-state"


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
        f"--call_state_topic={call_state_topic(topic)}",
        *extra,
    ]


@contextmanager
def streaming_job(argv: Sequence[str]) -> Any:
    """Run the streaming job in this process, checked first as ``callqa run`` does (which
    creates the call-state topic); cancel it on exit."""
    result, _ = submit(list(argv))
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


def produce_calls(
    bootstrap: str,
    topic: str,
    calls: Sequence[CallAudio],
    start_ms: int,
    stagger_ms: int,
    realtime: bool = True,
) -> dict[str, int]:
    """Send ``calls`` interleaved, each ``stagger_ms`` after the one before; chunks per call."""
    streams = [call_events(c, start_ms + stagger_ms * i) for i, c in enumerate(calls)]
    producer = new_producer(bootstrap)
    try:
        send_events(producer, topic, interleave(streams), realtime=realtime, progress=False)
    finally:
        producer.close()
    return {c.call_id: len(s) for c, s in zip(calls, streams, strict=True)}


def wait_until(
    what: str,
    done: Callable[[], object],
    timeout_s: float,
    log: Path | None = None,
    alive: Callable[[], bool] = lambda: True,
    poll_s: float = 0.2,
) -> None:
    """Poll ``done`` every ``poll_s`` until it is true; fail with ``what`` and the tail of the
    job's ``log`` (a job run as its own process) when ``timeout_s`` passes or the job is no
    longer ``alive``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        tail = "" if log is None else f"\n{log.read_text()[-3000:]}"
        assert alive(), f"the job ended while waiting: {what}{tail}"
        assert time.monotonic() < deadline, f"{what}{tail}"
        time.sleep(poll_s)


def warm_up(
    bootstrap: str,
    topic: str,
    out: Path,
    log: Path | None = None,
    alive: Callable[[], bool] = lambda: True,
    timeout_s: float = 300,
) -> dict[str, int]:
    """Send one short call and wait for its final row: then the job is up and reading, and a
    stream sent next comes to a running job (on a loaded machine the start alone can take
    minutes, and a stream sent at once would be all final at the first look). Returns the
    call's chunk count, for the expected calls."""
    warm = synthetic_call("warm-up", 2.0, seed=99)
    sent = produce_calls(bootstrap, topic, [warm], int(time.time() * 1000), 0)
    wait_until(
        "the job did not come up (the warm-up call has no final row)",
        lambda: warm.call_id in {r["call_id"] for r in warehouse.final_calls(out)},
        timeout_s, log, alive,
    )  # fmt: skip
    return sent


def assert_each_call_once(out: Path, expected: dict[str, int], log_text: str = "") -> None:
    """Every expected call has exactly one final row with all of its chunks (0 lost, 0
    duplicated), and DuckDB finds no duplicate final rows."""
    rows = {r["call_id"] for r in warehouse.final_calls(out)}
    assert rows == set(expected), f"lost calls: {set(expected) - rows}\n{log_text[-3000:]}"
    finals = [r for r in warehouse.all_call_rows(out) if r["is_final"]]
    assert len(finals) == len(expected), "a call has more than one final row"
    assert warehouse.duplicate_final_rows(out) == []
    for r in finals:
        assert r["chunk_count"] == expected[r["call_id"]], f"{r['call_id']} rebuilt partially"
        assert r["missing_seq_count"] == 0 and r["duplicate_chunks"] == 0
