"""Stopping a local service: an exited child is reaped at once, not waited on as a zombie."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from beam_jobs.services.local import exited


def test_an_exited_child_is_gone_at_once_and_a_live_process_is_not() -> None:
    child = subprocess.Popen(["sleep", "60"])
    assert not exited(child.pid)
    os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not exited(child.pid):  # a zombie until reaped: signal 0 alone would still reach it
        assert time.monotonic() < deadline, "the exited child was never seen as gone"
        time.sleep(0.05)
    assert not exited(os.getpid())  # not our child, and alive
