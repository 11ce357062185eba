"""Stopping the launcher cancels its job: signals become ``Stopped``; on a Flink cluster the
job is found by name in Flink's REST overview."""

from __future__ import annotations

import os
import signal

import pytest

from beam_jobs.runner import Stopped, flink_jobs_of, flink_rest_url, stop_on_signals


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
    job_id = "BeamApp-root-1206-f502_6b5e1c2a-0d1f-4c3e-9a7b-1f2e3d4c5b6a"
    assert flink_jobs_of(overview, job_id) == ["a1", "a2"]
    assert flink_jobs_of({"jobs": []}, job_id) == []


def test_signals_raise_stopped_inside_and_are_restored_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as stopped, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.signum == signal.SIGTERM and str(stopped.value) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
