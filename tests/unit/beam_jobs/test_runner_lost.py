"""``beam_jobs.runner.wait_until_finish``: a runner that dies under the job is one sentence."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import grpc
import pytest

from beam_jobs.runner import RunnerLost, wait_until_finish

DATA_PLANE = logging.getLogger("apache_beam.runners.worker.data_plane")
COMMON = logging.getLogger("apache_beam.runners.common")


class _Closed(grpc.RpcError):
    """A stream of a server that went away, as gRPC raises it."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__()
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "Stream removed (Socket closed)"


class _Result:
    """A pipeline result whose runner dies: the SDK worker's threads and data plane see the
    closed streams too (Prism's LOOPBACK worker runs in the job's process)."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def wait_until_finish(self) -> None:
        for name in ("run_worker", "read_state"):
            thread = threading.Thread(target=self._die, name=name)
            thread.start()
            thread.join()
        try:
            raise _Closed(grpc.StatusCode.UNAVAILABLE)
        except grpc.RpcError:
            DATA_PLANE.exception("Failed to read inputs in the data plane.")
        # a DoFn whose state read failed: Beam logs the gRPC error and its stack as text
        COMMON.error("_MultiThreadedRendezvous: status = StatusCode.UNAVAILABLE\nTraceback …")
        # and the SDK worker prints the failed bundle's traceback to stderr before it logs it
        in_thread(print, f"{TRACEBACK}grpc: status = StatusCode.UNAVAILABLE", file=sys.stderr)
        raise _Closed(self._code)

    def _die(self) -> None:
        raise _Closed(grpc.StatusCode.UNAVAILABLE)


TRACEBACK = 'Traceback (most recent call last):\n  File "sdk_worker.py", line 310, in _execute\n'


def in_thread(target: Any, *args: Any, **kwargs: Any) -> None:
    thread = threading.Thread(target=target, args=args, kwargs=kwargs)
    thread.start()
    thread.join()


@pytest.fixture(autouse=True)
def _restore_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(DATA_PLANE, "filters", [])
    for handler in logging.getLogger().handlers:
        monkeypatch.setattr(handler, "filters", list(handler.filters))


def test_a_lost_runner_is_one_error_and_one_warning(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for _job in range(2):  # a second job in one process (tests, the batch CLI) is quiet too
        caplog.clear()
        with pytest.raises(RunnerLost, match=r"lost the runner mid-job: .*\(Stream removed"):
            wait_until_finish(_Result(grpc.StatusCode.UNAVAILABLE))
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in warnings] == [
            "a stream to the runner closed (UNAVAILABLE, in thread run_worker)"
        ]
        # one note per closed stream and handler: debug lines after the first warning
        notes = [r for r in caplog.records if "stream to the runner" in r.getMessage()]
        assert len(notes) >= 4
        assert not [r for r in caplog.records if "Traceback" in r.getMessage()]
        assert "Traceback" not in capsys.readouterr().err
    COMMON.error("after the job ended")  # Beam's records are dropped once the runner is lost
    # an SDK worker thread's traceback after that, whatever the error: dropped; its other
    # lines and the main thread's are not
    in_thread(print, f"{TRACEBACK}RuntimeError: a bundle failed", file=sys.stderr)
    in_thread(print, "a worker's line", file=sys.stderr)
    print(f"{TRACEBACK}ValueError: the main thread's", file=sys.stderr)
    err = capsys.readouterr().err
    assert err == f"a worker's line\n{TRACEBACK}ValueError: the main thread's\n", err
    assert "after the job ended" not in [r.getMessage() for r in caplog.records]


def test_other_failures_are_not_a_lost_runner() -> None:
    with pytest.raises(_Closed) as raised:
        wait_until_finish(_Result(grpc.StatusCode.INVALID_ARGUMENT))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
