"""The worker pool reads what its workers print: Beam's servicer pipes a worker's stdout and
never reads it, so a worker that printed more than a pipe holds blocked."""

from __future__ import annotations

import logging
import stat
import time
from pathlib import Path

import pytest
from apache_beam.portability.api import beam_fn_api_pb2

from beam_jobs.services.worker_pool import RelayingWorkerPool


def test_a_worker_that_prints_more_than_a_pipe_holds_runs_to_its_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the servicer's container_executable: a "worker" that prints 256 KiB, then says it ended
    worker = tmp_path / "worker.sh"
    done = tmp_path / "done"
    worker.write_text(
        f"#!/bin/sh\nfor i in $(seq 4096); do echo line-$i-$(printf '%050d' 0); done\n"
        f"touch {done}\n"
    )
    worker.chmod(worker.stat().st_mode | stat.S_IXUSR)
    pool = RelayingWorkerPool(use_process=True, container_executable=str(worker))
    caplog.set_level(logging.INFO, logger="beam_jobs.services.worker_pool")
    response = pool.StartWorker(beam_fn_api_pb2.StartWorkerRequest(worker_id="w-1"), None)
    assert not response.error, response.error
    process = pool._worker_processes["w-1"]  # noqa: SLF001
    assert process.wait(timeout=60) == 0 and done.exists()
    deadline = time.monotonic() + 30  # the relay logs the last lines after the worker ended
    while "line-4096-" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "worker w-1: line-1-" in caplog.text and "worker w-1: line-4096-" in caplog.text
