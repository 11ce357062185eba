"""Recovery without a human: ``deploy/local/supervise.sh`` runs the streaming job; the job's
process is killed with ``kill -9`` mid-stream; the supervisor starts it again by itself, and
every produced call has exactly one final row with all of its chunks (0 lost, 0 duplicated).
Stopping the supervisor stops the job and everything it started. The systemd unit that does
the same under systemd passes ``systemd-analyze verify``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from beam_jobs import warehouse
from beam_jobs.demo.producer import (
    call_events,
    interleave,
    new_producer,
    send_events,
    synthetic_call,
)
from tests.integration.harness import assert_each_call_once, job_args

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _job_pids(supervisor: subprocess.Popen[bytes]) -> list[int]:
    """The job processes (``beam_jobs.cli run``) under the supervisor."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return [
            p.pid
            for p in psutil.Process(supervisor.pid).children()
            if "beam_jobs.cli" in " ".join(p.cmdline())
        ]
    return []


def _wait_for(what: str, predicate, timeout_s: float, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_the_supervisor_restarts_a_killed_job_and_nothing_is_lost(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    out, log = tmp_path / "out", tmp_path / "supervise.log"
    durations = [20.0, 3.0, 18.0, 2.5, 4.0, 16.0, 3.5, 2.0]
    calls = [synthetic_call(f"sv-{i:02d}", d, seed=i) for i, d in enumerate(durations)]
    start_ms = int(time.time() * 1000) + 3000
    streams = [call_events(c, start_ms + i * 600) for i, c in enumerate(calls)]
    expected = {c.call_id: len(s) for c, s in zip(calls, streams, strict=True)}
    argv = job_args(
        kafka_bootstrap, topic, out, prism_location,
        "--inactivity_gap_s=3", "--live_interval_s=0", "--allowed_lateness_s=1",
        "--commit_interval_s=0.5", '--kafka_client_config={"client_id": "sv-secret-id"}',
    )  # fmt: skip
    env = {**os.environ, "CALLQA": f"{sys.executable} -m beam_jobs.cli"}
    with open(log, "ab") as fh:
        supervisor = subprocess.Popen(
            [str(ROOT / "deploy/local/supervise.sh"), *argv],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    producer = new_producer(kafka_bootstrap)
    thread = threading.Thread(
        target=send_events,
        args=(producer, topic, interleave(streams)),
        kwargs={"realtime": True, "progress": False},
        daemon=True,
    )
    job_processes: list[psutil.Process] = []
    try:
        _wait_for("the supervisor did not start the job", lambda: _job_pids(supervisor), 30, log)
        first = _job_pids(supervisor)[0]
        thread.start()
        _wait_for("no final rows before the kill", lambda: len(warehouse.final_calls(out)) >= 2,
                  90, log)  # fmt: skip
        assert len(warehouse.final_calls(out)) < len(calls), "the kill must come mid-stream"
        os.kill(first, signal.SIGKILL)  # the job only: the supervisor must notice
        _wait_for("the supervisor did not restart the job",
                  lambda: [p for p in _job_pids(supervisor) if p != first], 60, log)  # fmt: skip
        rows = warehouse.wait_for_final_calls(out, expected, timeout_s=120)
        thread.join(timeout=60)
        job_processes = [psutil.Process(p) for p in _job_pids(supervisor)]
        job_processes += [c for p in job_processes for c in p.children(recursive=True)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor.pid, signal.SIGTERM)
        try:
            supervisor.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait(timeout=10)
        producer.close()

    text = log.read_text()
    assert set(rows) == set(expected)
    assert_each_call_once(out, expected, text)
    assert re.search(r"job exited with status \d+ after \d+ s; restarting in 1 s", text), text
    assert "sv-secret-id" not in text  # client settings (credentials) stay out of its log
    assert supervisor.returncode == 0
    time.sleep(1)  # the stopped group's last processes exit
    assert not [p for p in job_processes if p.is_running() and p.status() != "zombie"]


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (no systemd on this machine)")
    unit = (ROOT / "deploy/systemd/callqa-stream.service").read_text()
    # Point it at this checkout (the unit's paths are a server's) and a user that exists here.
    unit = unit.replace("/opt/callqa", str(ROOT)).replace("User=callqa", "User=root")
    path = tmp_path / "callqa-stream.service"
    path.write_text(unit)
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert "Restart=always" in unit and "KillMode=control-group" in unit
