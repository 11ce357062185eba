"""Stopping the launcher cancels its job: signals become ``Stopped``; on a Flink cluster the
job is found by name in Flink's REST overview."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from beam_jobs.runner import Stopped, cancel_job, flink_jobs_of, flink_rest_url, stop_on_signals

JOB_ID = "BeamApp-root-1206-f502_6b5e1c2a-0d1f-4c3e-9a7b-1f2e3d4c5b6a"


def test_flink_rest_url_only_for_a_cluster() -> None:
    assert flink_rest_url("127.0.0.1:8081") == "http://127.0.0.1:8081"
    assert flink_rest_url("https://flink.example:443") == "https://flink.example:443"
    assert flink_rest_url("[local]") is None and flink_rest_url(None) is None


def test_flink_jobs_of_matches_the_beam_job_name_and_live_states() -> None:
    overview = {
        "jobs": [
            {"jid": "a1", "name": "BeamApp-root-1206-f502", "state": "RUNNING"},
            {"jid": "a2", "name": "BeamApp-root-1206-f502", "state": "RESTARTING"},
            {"jid": "a3", "name": "BeamApp-root-1206-f502", "state": "CANCELED"},
            {"jid": "b1", "name": "BeamApp-root-1206-aa0d", "state": "RUNNING"},
        ]
    }
    assert flink_jobs_of(overview, JOB_ID) == ["a1", "a2"]
    assert flink_jobs_of({"jobs": []}, JOB_ID) == []


class _FakeFlink(BaseHTTPRequestHandler):
    """Flink's REST API as far as cancel_job uses it: the overview and the cancel PATCH."""

    calls: list[tuple[str, str]] = []

    def _answer(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(202 if self.command == "PATCH" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the handler's API)
        self.calls.append(("GET", self.path))
        jobs = [{"jid": "a1", "name": JOB_ID.rsplit("_", 1)[0], "state": "RUNNING"},
                {"jid": "b1", "name": "BeamApp-other", "state": "RUNNING"}]  # fmt: skip
        self._answer({"jobs": jobs})

    def do_PATCH(self) -> None:  # noqa: N802
        self.calls.append(("PATCH", self.path))
        self._answer({})

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def fake_flink() -> Iterator[str]:
    _FakeFlink.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeFlink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Result:
    _job_id = JOB_ID
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_cancel_job_cancels_only_its_flink_job_then_the_beam_job(fake_flink: str) -> None:
    result = _Result()
    cancel_job(result, fake_flink, timeout_s=5)
    assert _FakeFlink.calls == [("GET", "/jobs/overview"), ("PATCH", "/jobs/a1?mode=cancel")]
    assert result.cancelled


def test_cancel_job_with_flink_unreachable_still_cancels_the_beam_job(
    fake_flink: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = _Result()
    cancel_job(result, "127.0.0.1:1", timeout_s=5)
    assert result.cancelled and "could not cancel the job on Flink" in caplog.text


def test_signals_raise_stopped_inside_and_are_restored_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as stopped, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.signum == signal.SIGTERM and str(stopped.value) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
