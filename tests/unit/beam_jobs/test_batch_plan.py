"""The batch job's decisions, as pure functions: which files to run (resume, --reprocess,
retries), why a file is dead-lettered, each file's outcome after the run, the throughput
beside the ceiling, and the progress count from file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from beam_jobs.batch import (
    FAILED,
    INCOMPLETE,
    MISSING,
    PARTIAL,
    PROCESSED,
    SKIPPED,
    FilePlan,
    Throughput,
    _FinishedCalls,
    file_results,
    format_table,
    plan_files,
    row_complete,
    summary_line,
    waves,
)
from schemas.records import RecordingTask
from transforms.io.recordings import (
    RecordingInfo,
    RecordingsConfig,
    recording_problem,
    recording_tasks,
)


def test_a_stem_seen_before_is_a_duplicate_call_id() -> None:
    tasks = recording_tasks(["a/x.wav", "b/y.flac", "c/x.mp3"])
    assert [(t.file_index, t.call_id, t.duplicate_of) for t in tasks] == [
        (0, "x", None), (1, "y", None), (2, "x", "a/x.wav"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (RecordingInfo(60.0, 2, 8000), None),
        (RecordingInfo(60.0, 1, 44100), None),
        (RecordingInfo(60.0, 4, 16000), "unsupported_audio"),
        (RecordingInfo(0.0, 2, 16000), "empty_recording"),
        (RecordingInfo(7201.0, 2, 16000), "recording_too_long"),
        (RuntimeError("Format not recognised"), "unreadable_audio"),
    ],
)
def test_recording_problems(info: RecordingInfo | Exception, reason: str | None) -> None:
    problem = recording_problem(info, RecordingsConfig(max_recording_s=7200))
    assert (problem[0] if problem else None) == reason
    if problem:
        assert problem[1]  # a message that says what is wrong


def metrics(complete: bool = True, failures: int = 0, utterances: int = 5) -> dict[str, Any]:
    return {"transcripts_complete": complete, "transcript_failures": failures,
            "utterance_count": utterances}  # fmt: skip


def row(call_id: str, version: int = 1, m: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"call_id": call_id, "version": version, "metrics": m}


def wav(folder: Path, name: str, seconds: float) -> str:
    path = folder / name
    sf.write(path, np.zeros((int(16000 * seconds), 2), np.float32), 16000)
    return str(path)


def test_plan_skips_complete_calls_retries_incomplete_ones_and_reprocess_runs_all(
    tmp_path: Path,
) -> None:
    paths = [wav(tmp_path, f"{c}.wav", 2.0) for c in ("done", "short", "failed", "new")]
    stored = {
        "done": row("done", 1, metrics()),
        "short": row("short", 1, metrics(complete=False)),
        "failed": row("failed", 2, metrics(failures=1)),
    }
    tasks = recording_tasks(paths)
    plan = plan_files(tasks, stored, with_asr=True, reprocess=False)
    assert [(p.task.call_id, p.skip, p.prior_version, p.audio_s) for p in plan] == [
        ("done", True, 1, 2.0), ("short", False, 1, 2.0), ("failed", False, 2, 2.0),
        ("new", False, 0, 2.0),
    ]  # fmt: skip
    assert not any(p.skip for p in plan_files(tasks, stored, with_asr=True, reprocess=True))
    # Without ASR a final row is all a call gets: complete.
    assert all(p.skip for p in plan_files(tasks[:3], stored, with_asr=False, reprocess=False))


def test_an_unreadable_file_is_planned_with_no_audio(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not audio")
    (plan,) = plan_files(recording_tasks([str(bad)]), {}, with_asr=True, reprocess=False)
    assert (plan.skip, plan.audio_s) == (False, 0.0)


def test_row_complete_needs_every_transcript_with_asr() -> None:
    assert row_complete(row("a", 1, metrics()), with_asr=True)
    assert not row_complete(row("a", 1, metrics(complete=False)), with_asr=True)
    assert not row_complete(row("a", 1, metrics(failures=2)), with_asr=True)
    assert not row_complete(row("a", 1, None), with_asr=True)  # a row from a run without ASR
    assert row_complete(row("a", 1, None), with_asr=False)


def plan_of(call_id: str, index: int, prior: int = 0, skip: bool = False) -> FilePlan:
    return FilePlan(RecordingTask(index, f"/rec/{call_id}.wav", call_id), 10.0, prior, skip)


def letter(call_id: str, index: int, reason: str) -> dict[str, Any]:
    return {"stage": "read", "call_id": call_id, "partition": index, "reason": reason,
            "message": f"/rec/{call_id}.wav: {reason}"}  # fmt: skip


def test_file_results_give_each_file_its_status() -> None:
    plans = [
        plan_of("ok", 0),
        plan_of("kept", 1, prior=1, skip=True),
        plan_of("bad", 2),
        plan_of("short", 3),
        plan_of("asr-err", 4),
        plan_of("lost", 5),
        plan_of("retried", 6, prior=1),
        plan_of("stale", 7, prior=1),
    ]
    stored = {
        "ok": row("ok", 1, metrics()),
        "kept": row("kept", 1, metrics()),
        "short": row("short", 1, metrics(complete=False)),
        "asr-err": row("asr-err", 1, metrics(failures=2)),
        "retried": row("retried", 2, metrics()),
        "stale": row("stale", 1, metrics(complete=False)),  # no new version: nothing ran
    }
    letters = [letter("bad", 2, "unreadable_audio"), {**letter("x", 0, "decode"), "stage": "x"}]
    results = file_results(plans, stored, letters, with_asr=True)
    assert [(r.call_id, r.status, r.version) for r in results] == [
        ("ok", PROCESSED, 1), ("kept", SKIPPED, 1), ("bad", FAILED, None),
        ("short", INCOMPLETE, 1), ("asr-err", PARTIAL, 1), ("lost", MISSING, None),
        ("retried", PROCESSED, 2), ("stale", MISSING, 1),
    ]  # fmt: skip
    assert "unreadable_audio" in results[2].detail
    table = format_table(results)
    assert all(r.call_id in table for r in results) and "status" in table.splitlines()[0]
    line = summary_line(results, None)
    assert line.startswith("callqa batch: 8 recordings:") and "2 processed" in line


def test_throughput_is_audio_per_wall_time_beside_the_ceiling() -> None:
    # 1 h of recordings with 40 min of speech, in 10 min; batched ASR does 8 speech-s a second.
    tp = Throughput(audio_s=3600, speech_s=2400, wall_s=600, ceiling_speech_s_per_s=8.0)
    assert tp.audio_h_per_wall_h == pytest.approx(6.0)
    assert tp.ceiling_audio_h_per_wall_h == pytest.approx(12.0)  # 2400 s of speech in 300 s
    assert tp.fraction_of_ceiling == pytest.approx(0.5)
    assert "0.50 of it" in summary_line([], tp)
    assert Throughput(3600, 0, 600, None).fraction_of_ceiling is None


def test_progress_counts_new_final_rows_and_read_dead_letters(tmp_path: Path) -> None:
    calls = tmp_path / "calls" / "dt=2025-11-25" / "hour=12"
    letters = tmp_path / "dead_letters" / "dt=unknown" / "hour=unknown"
    calls.mkdir(parents=True)
    letters.mkdir(parents=True)
    for name in ("a.v1.final.parquet", "b.v1.final.parquet", "b.v2.final.parquet",
                 "c.v1.final.parquet", "d.v1.live.o9.parquet", "x.y.v1.final.parquet"):  # fmt: skip
        (calls / name).touch()
    (letters / "read.unreadable_audio.e.0123456789abcdef.parquet").touch()
    prior = {"a": 0, "b": 1, "c": 1, "d": 0, "e": 0, "x.y": 0}
    assert _FinishedCalls(str(tmp_path), prior, iceberg=False)() == {"a", "b", "e", "x.y"}


def test_waves_cut_the_plan_by_audio_in_order() -> None:
    def sized(call_id: str, seconds: float) -> FilePlan:
        return plan_of(call_id, 0)._replace(audio_s=seconds)

    todo = [sized("a", 1500), sized("b", 1500), sized("c", 1500), sized("d", 5000),
            sized("bad", 0), sized("e", 100)]  # fmt: skip
    cut = [[f.task.call_id for f in w] for w in waves(todo, 3600)]
    assert cut == [["a", "b"], ["c"], ["d", "bad"], ["e"]]
    assert [len(w) for w in waves(todo, 1e9)] == [6]
    assert waves([], 3600) == []
