"""Recovery without a human: ``deploy/local/supervise.sh`` runs the streaming job, and one of
its processes is killed with ``kill -9`` mid-stream:

- the job's process: the supervisor starts it again;
- the Prism runner (a child of the job's process): the job ends with one line saying so and a
  non-zero status, and the supervisor starts it again;
- the validation (great-expectations) child of the job's process: the job starts a new child
  and goes on in the same process, no restart.

(On Prism the SDK worker is the job's own process, LOOPBACK: killing it is the first case.)
Either way every produced call has exactly one final row with all of its chunks (0 lost, 0
duplicated). Stopping the supervisor stops the job and everything it started. The systemd unit
that does the same under systemd passes ``systemd-analyze verify``."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest

from beam_jobs import warehouse
from beam_jobs.demo.producer import synthetic_call
from tests.integration.harness import (
    assert_each_call_once,
    job_args,
    produce_calls,
    wait_until,
    warm_up,
)

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


def _children(job: int, pattern: str) -> list[int]:
    """The job's live child processes whose command line matches ``pattern``."""
    found = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(job).children():
            with contextlib.suppress(psutil.Error):
                if child.status() != "zombie" and re.search(pattern, " ".join(child.cmdline())):
                    found.append(child.pid)
    return found


class Victim(NamedTuple):
    """What is killed: its process, found from the job's pid; whether the supervisor restarts
    the job (else the job recovers in the same process); the log line of that recovery."""

    find: Callable[[int], list[int]]
    restarts: bool
    recovery_log: str


VICTIMS = {
    "job": Victim(lambda job: [job], True, r"job exited with status \d+ after \d+ s; restarting"),
    "prism": Victim(
        lambda job: _children(job, r"^\S*prism --job_port"),
        True,
        r"(?s)callqa: error: lost the runner mid-job.*job exited with status 1 after",
    ),
    "gx_child": Victim(
        lambda job: _children(job, r"multiprocessing\.spawn"),
        False,
        "the validation child died; starting a new one",
    ),
}


def _process_tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    return []


#: CI kills the runner (the job notices, exits, and the supervisor restarts it); the job's own
#: process and the validation child (replaced in place; tests/unit/transforms/test_validate.py
#: kills it too) are the ``full`` run's.
CI_VICTIMS = ("prism",)


@pytest.mark.parametrize(
    "victim", [pytest.param(v, marks=() if v in CI_VICTIMS else pytest.mark.full) for v in VICTIMS]
)
def test_the_job_recovers_from_a_killed_process_and_nothing_is_lost(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path, victim: str
) -> None:
    find, restarts, recovery_log = VICTIMS[victim]
    out, log = tmp_path / "out", tmp_path / "supervise.log"
    durations = [20.0, 3.0, 18.0, 2.5, 4.0, 16.0, 3.5, 2.0]
    calls = [synthetic_call(f"sv-{i:02d}", d, seed=i) for i, d in enumerate(durations)]
    argv = job_args(
        kafka_bootstrap, topic, out, prism_location,
        "--inactivity_gap_s=3", "--live_interval_s=0", "--allowed_lateness_s=1",
        "--commit_interval_s=0.5", '--kafka_client_config={"client_id": "sv-secret-id"}',
        # a commit a second: the kill comes between the short calls' final rows and the long
        # ones' (with the default 10 s, one commit can bring all eight)
        "--warehouse_commit_interval_s=1",
    )  # fmt: skip
    env = {**os.environ, "CALLQA": f"{sys.executable} -m beam_jobs.cli"}
    with open(log, "ab") as fh:
        supervisor = subprocess.Popen(
            [str(ROOT / "deploy/local/supervise.sh"), *argv],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    started: list[psutil.Process] = []  # every process of every run, checked after the stop
    producing = ThreadPoolExecutor(max_workers=1)
    try:
        wait_until("the supervisor did not start the job", lambda: _job_pids(supervisor), 30, log)
        first = _job_pids(supervisor)[0]
        ready = warm_up(kafka_bootstrap, topic, out, log)
        start_ms = int(time.time() * 1000) + 3000
        sent = producing.submit(produce_calls, kafka_bootstrap, topic, calls, start_ms, 600)
        wait_until("no final rows before the kill", lambda: len(warehouse.final_calls(out)) >= 3,
                  90, log)  # fmt: skip
        assert len(warehouse.final_calls(out)) < len(calls) + 1, "the kill must come mid-stream"
        started += _process_tree(first)
        (target,) = find(first)

        def successors() -> list[int]:
            """The job the supervisor started next, or the job's new child of the killed kind."""
            now = _job_pids(supervisor) if restarts else find(first)
            return [p for p in now if p not in (first, target)]

        os.kill(target, signal.SIGKILL)
        killed_at = time.monotonic()
        ended_s = math.nan
        if restarts:  # promptly: a job hung on a dead runner would never be restarted
            wait_until("the job did not end", lambda: first not in _job_pids(supervisor), 30, log)
            ended_s = time.monotonic() - killed_at
        wait_until("nothing took over from the killed process", successors, 60, log)
        recovered_s = time.monotonic() - killed_at
        print(f"{victim} killed: job ended {ended_s:.1f} s, recovered {recovered_s:.1f} s later")
        expected = {**ready, **sent.result(timeout=120)}
        rows = warehouse.wait_for_final_calls(out, expected, timeout_s=120)
        assert (_job_pids(supervisor) != [first]) is restarts, "restarted iff it should"
        for job in _job_pids(supervisor):
            started += _process_tree(job)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor.pid, signal.SIGTERM)
        try:
            supervisor.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait(timeout=10)
        producing.shutdown(wait=False, cancel_futures=True)

    text = log.read_text()
    assert set(rows) == set(expected)
    assert_each_call_once(out, expected, text)
    assert re.search(recovery_log, text), text
    assert ("restarting in" in text) is restarts, text
    assert "Traceback" not in text, text  # each recovery is a line or two, not a stack
    assert "sv-secret-id" not in text  # client settings (credentials) stay out of its log
    assert supervisor.returncode == 0
    time.sleep(1)  # the stopped group's last processes exit
    assert not [p for p in started if p.is_running() and p.status() != "zombie"]


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
