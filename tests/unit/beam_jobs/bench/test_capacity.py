"""``callqa bench capacity``'s pure parts: parsing, percentiles, event-time lag, py-spy stage
attribution, the final-row file names, the call schedule and the capacity decision."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import beam_jobs.bench.capacity as capacity_module
from beam_jobs.bench.capacity import (
    NATIVE,
    WARMUP_CALL_ID,
    CallInfo,
    CallScheduler,
    FinalRowWatcher,
    LevelResult,
    Run,
    capacity,
    event_time_lag_s,
    final_file_call,
    format_row,
    format_stages,
    frame_stage,
    lag_windows,
    parse_duration_s,
    parse_levels,
    quantile,
    speech_per_call_second,
    stack_stage,
    stage_cpu_s,
    thread_stage_samples,
    verdict,
    window_lag_s,
)
from transforms.io.recordings import CallAudio


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("1h", 3600), ("90s", 90), ("45", 45), ("1.5m", 90)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "5d", "m", "-3m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_s(text)


def test_parse_levels() -> None:
    assert parse_levels("2,4, 8,12") == (2, 4, 8, 12)
    assert parse_levels("1") == (1,)
    for bad in ("", "4,2", "0,2", "2,2", "two"):
        with pytest.raises(ValueError, match="--levels"):
            parse_levels(bad)


def test_quantile_nearest_rank_and_empty() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert quantile(values, 0.5) == 11.0  # round(0.5 * 19) = 10 → the 11th
    assert quantile(values, 0.95) == 19.0
    assert quantile([3.0], 0.95) == 3.0
    assert quantile([], 0.5) is None


# (receive ms, event-time end ms): transcripts of utterances ending at 1 s, 4 s, 6 s arrive
# 1.5 s, 1.2 s and 2.0 s later; the one of 2 s arrives out of order (after the one of 4 s).
RECEIVED = [(2500, 1000), (5200, 4000), (5300, 2000), (8000, 6000)]


def test_event_time_lag_is_wall_clock_minus_latest_published() -> None:
    assert event_time_lag_s(RECEIVED, 2000) is None  # nothing published yet
    assert event_time_lag_s(RECEIVED, 2500) == 1.5
    assert event_time_lag_s(RECEIVED, 5000) == 4.0  # grows between transcripts
    assert event_time_lag_s(RECEIVED, 5300) == 1.3  # an older event does not lower it
    assert event_time_lag_s(RECEIVED, 9000) == 3.0


def test_window_lag_is_the_smallest_in_the_window() -> None:
    assert window_lag_s(RECEIVED, 3000, 6000) == 1.2  # just after the 4 s transcript
    assert window_lag_s(RECEIVED, 5250, 7900) == 1.25  # at its start: 5.25 − 4.0
    assert window_lag_s(RECEIVED, 0, 1000) is None


def test_a_job_falling_behind_shows_growing_lag() -> None:
    # one utterance every 2 s; the job keeps up for 60 s, then each transcript takes 0.5 s
    # longer than the one before
    keeps = [(t + 1000, t) for t in range(2000, 60_000, 2000)]
    behind = [(t + 1000 + 250 * (t - 60_000) // 1000, t) for t in range(60_000, 120_000, 2000)]
    received = keeps + behind
    (a0, a1), (b0, b1) = lag_windows(0, 120_000)
    assert (a0, a1, b0, b1) == (0, 30_000, 90_000, 120_000)
    start, end = window_lag_s(received, a0, a1), window_lag_s(received, b0, b1)
    assert start == 1.0
    assert end is not None and end > start + 5


def test_lag_windows_are_a_third_of_a_short_hold() -> None:
    assert lag_windows(0, 30_000) == ((0, 10_000), (20_000, 30_000))


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ("transforms/segment.py", "segment"),
        ("apache_beam/transforms/window.py", None),
        ("transforms/asr/whisper.py", "asr"),
        ("transforms/io/parquet_sink.py", "io/parquet_sink"),
        ("transforms/core/segmentation.py", "core"),
        ("transforms/__init__.py", None),
        ("/venv/lib/python3.11/site-packages/torchvision/transforms/functional.py", None),
        ("apache_beam/runners/worker/sdk_worker.py", None),
    ],
)
def test_frame_stage(path: str, stage: str | None) -> None:
    assert frame_stage(path) == stage


def _stack(*files: str, tid: int = 11) -> list[str]:
    head = ['process 7:"python -m beam_jobs.cli run"', f"thread ({tid}): Thread-{tid}"]
    return head + [f"f{i} ({f}:{i})" for i, f in enumerate(files)]


BEAM = "apache_beam/runners/worker/operations.py"


def test_stack_stage_takes_the_deepest_stage_frame() -> None:
    assert stack_stage(_stack(BEAM, "transforms/segment.py", BEAM, "faster_whisper/vad.py")) == (
        "segment"
    )
    # a pure core helper counts for the stage that called it
    helper = _stack(BEAM, "transforms/segment.py", "transforms/core/segmentation.py")
    assert stack_stage(helper) == "segment"
    # the deepest stage wins: a sink called from inside the aggregation's bundle
    assert stack_stage(_stack("transforms/aggregate.py", "transforms/io/kafka_sink.py")) == (
        "io/kafka_sink"
    )
    # Beam's own transforms package is the runtime, not a stage of ours
    assert stack_stage(_stack("apache_beam/transforms/core.py", "grpc/_channel.py")) == (
        "beam/grpc"
    )
    assert stack_stage(_stack("threading.py", "selectors.py")) == "other"
    assert stack_stage(_stack("transforms/core/audio.py")) == "core"


def test_samples_per_thread_weighted_by_its_cpu_time() -> None:
    raw = "\n".join(
        [
            ";".join(_stack(BEAM, "transforms/asr/transcribe.py", tid=11)) + " 30",
            ";".join(_stack(BEAM, "transforms/segment.py", tid=11)) + " 10",
            ";".join(_stack(BEAM, "transforms/asr/whisper.py", tid=0x1F)) + " 15",
            ";".join(_stack(BEAM, tid=12)) + " 5",
            "garbage",
        ]
    )
    samples = thread_stage_samples(raw)
    assert samples == {11: {"asr": 30, "segment": 10}, 31: {"asr": 15}, 12: {"beam/grpc": 5}}
    # thread 11 used 8 CPU-s (3/4 of its samples in asr), 31 none, 12 one; 40 never sampled
    cpu = stage_cpu_s(samples, {11: 8.0, 31: 0.0, 12: 1.0, 40: 3.0})
    assert cpu == {"asr": 6.0, "segment": 2.0, "beam/grpc": 1.0, NATIVE: 3.0}
    assert format_stages(cpu, window_s=10.0) == (
        "asr 0.60 (50%), native threads 0.30 (25%), segment 0.20 (17%), beam/grpc 0.10 (8%)"
    )
    assert format_stages({}, 10.0) == "no CPU time in the window"


def test_frame_stage_strips_the_project_root() -> None:
    root = Path(capacity_module.__file__).resolve().parents[2]
    assert frame_stage(f"{root}/transforms/decode.py") == "decode"
    assert frame_stage(f"{root}/transforms/io/commit.py") == "io/commit"


def test_final_row_watcher_notes_new_final_files_only(tmp_path: Path) -> None:
    hour = tmp_path / datetime.now(UTC).strftime("dt=%Y-%m-%d/hour=%H")  # one clock reading
    hour.mkdir(parents=True)
    (hour / "cap-00001.v0.live.o12.parquet").write_bytes(b"")
    (hour / ".cap-00001.v1.final.parquet.ab12.tmp").write_bytes(b"")
    watcher = FinalRowWatcher(tmp_path, poll_s=3600)  # polled by hand here
    try:
        watcher.poll()
        assert watcher.first_final_ms == {}
        (hour / "cap-00001.v1.final.parquet").write_bytes(b"")
        watcher.poll()
        first = watcher.first_final_ms["cap-00001"]
        assert abs(first - time.time() * 1000) < 5000
        (hour / "cap-00001.v2.final.parquet").write_bytes(b"")  # a correction: not "first"
        watcher.poll()
        assert watcher.first_final_ms == {"cap-00001": first}
    finally:
        watcher.close()


def test_final_file_call() -> None:
    assert final_file_call("cap-00012.v1.final.parquet") == ("cap-00012", 1)
    assert final_file_call("a.b.v3.final.parquet") == ("a.b", 3)
    assert final_file_call("cap-00012.v0.live.o17.parquet") is None
    assert final_file_call(".cap-00012.v1.final.parquet.abc.tmp") is None
    assert final_file_call(".cap-00012.v1.final.parquet") is None


def test_speech_per_call_second_over_complete_calls() -> None:
    utts = [("a", 0, 3000), ("a", 5000, 7000), ("b", 0, 4000), ("open", 0, 9000)]
    assert speech_per_call_second(utts, {"a": 10.0, "b": 10.0}) == pytest.approx(0.45)
    assert speech_per_call_second(utts, {}) is None


def _result(**kw: object) -> LevelResult:
    base: dict[str, object] = dict(
        calls=4, utterances=40, transcript_p50_s=1.2, transcript_p95_s=2.0, finals=3,
        finals_missing=0, final_p95_s=3.5, lag_start_s=1.0, lag_end_s=1.4,
        cpu_cores={"job": 1.2, "runner": 0.3, "kafka": 0.1, "bench": 0.05},
        rss_mb={"job": 900.0, "runner": 80.0, "kafka": 400.0}, stages="",
    )  # fmt: skip
    base.update(kw)
    return LevelResult(**base)  # type: ignore[arg-type]


def test_verdict_applies_the_criteria() -> None:
    assert verdict(_result()) == []
    assert verdict(_result(transcript_p95_s=2.6)) == ["transcript p95 > 2.5 s"]
    assert verdict(_result(final_p95_s=5.2)) == ["final row p95 > 5 s"]
    assert verdict(_result(lag_start_s=1.0, lag_end_s=3.5)) == ["lag grew > 2 s"]
    assert verdict(_result(lag_start_s=3.0, lag_end_s=1.0)) == []  # shrinking is fine
    # no evidence is no pass
    assert verdict(_result(transcript_p95_s=None, final_p95_s=None, lag_end_s=None)) == [
        "no transcripts", "no call ended in the hold (raise --hold-s)", "lag unknown",
    ]  # fmt: skip


def test_capacity_is_the_top_of_the_passing_prefix() -> None:
    assert capacity([(2, True), (4, True), (8, False), (12, True)]) == 4
    assert capacity([(4, True), (2, True)]) == 4
    assert capacity([(2, False), (4, True)]) == 0
    assert capacity([]) == 0


def test_format_row() -> None:
    row = format_row(4, _result(finals_missing=1))
    assert row.split()[:5] == ["4", "40", "1.20", "2.00", "3.50"]
    assert "(3, 1 late)" in row and "1.0→1.4" in row
    assert "1.20/0.30/0.10/0.05" in row and "900/80/400" in row and row.endswith("ok")


def _fake_call(index: int, call_id: str) -> CallAudio:
    """Call ``index`` lasts (1 + index) s on each channel."""
    n = 16000 * (1 + index)
    return CallAudio(call_id, 16000, {"agent": np.zeros(n, np.float32),
                                      "customer": np.zeros(n, np.float32)})  # fmt: skip


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_scheduler_keeps_target_calls_live_with_fresh_ids() -> None:
    clock = _Clock()
    s = CallScheduler(_fake_call, pool_size=2, clock=clock)
    ramp = s.set_target(2, spacing_s=0.5)
    assert ramp == 0.5 and s.live() == 2
    assert [(c.call_id, c.pool_index) for c in s.calls.values()] == [
        ("cap-00000", 0), ("cap-00001", 1)
    ]  # fmt: skip
    first = s.calls["cap-00000"]
    assert first.start_ms == 1_000_200 and first.end_ms == first.start_ms + 1000
    events = s.events()
    sent = [next(events) for _ in range(200)]
    times = [e.capture_time_ms for e in sent]
    assert times == sorted(times)  # one capture-ordered stream
    # the first two calls ended, their replacements reuse the pool cyclically, 2 live
    assert {"cap-00002", "cap-00003"} <= s.calls.keys()
    assert s.calls["cap-00002"].pool_index == 0 and s.live() == 2
    replacement = s.calls["cap-00002"]
    assert 500 <= replacement.start_ms - first.end_ms <= 2000  # the drawn gap
    assert sum(e.end_of_call for e in sent if e.call_id == "cap-00000") == 1
    # each call: 10 chunks per channel per second, seq from 0 on both channels
    mine = [e for e in sent if e.call_id == "cap-00000"]
    assert len(mine) == 20 and {e.seq for e in mine} == set(range(10))
    # no more replacements once the target drops
    s.set_target(0, spacing_s=1.0)
    rest = []
    for _ in range(400):
        e = next(events)
        rest.append(e)
        if s.live() == 0:
            break
    assert s.live() == 0
    s.stop()
    assert list(events) == []


def test_slowest_transcripts_ranked_with_channel_length_and_place_in_the_call() -> None:
    def event(call_id: str, channel: str, start_ms: int, end_ms: int) -> dict[str, object]:
        return {"call_id": call_id, "channel": channel, "start_ms": start_ms, "end_ms": end_ms}

    follower = SimpleNamespace(events=[
        (12_000, event("cap-1", "agent", 8_000, 11_000)),  # 1.1 s after its end (+ chunk)
        (19_000, event("cap-1", "customer", 12_000, 14_000)),  # 5.1 s
        (17_000, event("cap-2", "agent", 13_000, 15_500)),  # 1.6 s
        (40_000, event(WARMUP_CALL_ID, "agent", 1_000, 2_000)),  # the warm-up: never counted
        (60_000, event("cap-2", "agent", 30_000, 31_000)),  # ends after the window
    ])  # fmt: skip
    scheduler = SimpleNamespace(calls={"cap-1": CallInfo("cap-1", 0, 5_000, 20_000)})
    run = Run(
        job=None, log=Path("job.log"), scheduler=scheduler, follower=follower,  # type: ignore[arg-type]
        finals=None, groups={}, spy=None, mean_call_s=60.0,  # type: ignore[arg-type]
    )  # fmt: skip
    assert run.slowest(0, 20_000, k=2) == (
        "5.10 s (customer, 2.0 s long, ending 9.0 s in)",
        "1.60 s (agent, 2.5 s long)",  # cap-2 already left the scheduler: no place shown
    )


def test_cluster_role_finds_flink_jvms_and_the_worker_pool() -> None:
    jvm = [
        "java",
        "-Xmx1g",
        "-cp",
        "a.jar",
        "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
    ]
    assert capacity_module.cluster_role(jvm) == "runner"
    pool = ["/venv/bin/python", "-m", "beam_jobs.services.worker_pool", "--port=50000"]
    assert capacity_module.cluster_role(pool) == "job"
    beams = ["python", "-m", "apache_beam.runners.worker.worker_pool_main"]
    assert capacity_module.cluster_role(beams) == "job"
    assert capacity_module.cluster_role(["java", "kafka.Kafka", "server.properties"]) is None
    assert capacity_module.cluster_role(["grep", "TaskManagerRunner"]) is None


def test_process_groups_count_a_local_clusters_processes(tmp_path: Path) -> None:
    """Real processes whose command lines are a TaskManager's and a worker pool's (with an SDK
    worker child): the cluster's CPU is the runner's, the pool's tree the job's."""
    tm = subprocess.Popen(
        ["sh", "-c", "sleep 60", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"]
    )
    pool = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.run(['sleep', '60'])",
            "beam_jobs.services.worker_pool",
        ]  # fmt: skip
    )
    job = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 30
        while True:  # the pool's child (its "SDK worker") has started
            groups = capacity_module.process_groups(job.pid, None)
            pids = {k: {p.pid for p in v} for k, v in groups.items()}
            if len(pids["job"]) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert tm.pid in pids["runner"]
        assert {job.pid, pool.pid} <= pids["job"] and len(pids["job"]) >= 3
        assert tm.pid not in pids["job"] and pool.pid not in pids["runner"]
    finally:
        for proc in (tm, pool, job):
            proc.kill()
            proc.wait()
