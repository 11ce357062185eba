"""The batch job over recordings on disk runs the streaming job's stages on Prism: one final
row per readable recording, with event time from the file; a file that cannot be processed
(unreadable, too long, more than two channels, a call id another file has) is a dead letter,
named in the per-file table and the JSON summary, and does not stop the others."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beam_jobs import warehouse
from beam_jobs.cli import main

pytestmark = pytest.mark.integration

MTIME_S = 1_764_072_000  # 2025-11-25T12:00:00Z: the recorder closed the file then


@pytest.mark.parametrize("warehouse_format", ["parquet", "iceberg"])
def test_batch_job_over_recordings(
    prism_location: str, tmp_path: Path, warehouse_format: str
) -> None:
    rec = tmp_path / "rec"
    (rec / "again").mkdir(parents=True)
    t = np.arange(16000 * 3) / 16000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 500 * t)], 1)
    sf.write(rec / "call-a.wav", stereo.astype(np.float32), 16000)  # 3 s, two parties
    sf.write(rec / "call-b.flac", stereo[:8000, 0].astype(np.float32), 8000)  # 1 s mono
    (rec / "call-c.wav").write_bytes(b"RIFF but not really audio")
    sf.write(rec / "call-d.wav", np.zeros((16000 * 5, 2), np.float32), 16000)  # 5 s: too long
    sf.write(rec / "call-e.wav", np.zeros((16000, 3), np.float32), 16000)  # three channels
    sf.write(rec / "again" / "call-a.wav", stereo.astype(np.float32), 16000)  # same call id
    for f in [*rec.iterdir(), *(rec / "again").iterdir()]:
        os.utime(f, (MTIME_S, MTIME_S))
    out = tmp_path / "out"

    # two pipelines (--wave_audio_s): 7 s of audio (the call-a files, call-b, call-c), then 6
    rc = main(["batch", "--runner=PrismRunner", f"--prism_location={prism_location}",
               f"--recordings={rec}/*", f"--recordings={rec}/again/*.wav",
               f"--output_dir={out}", "--max_recording_s=4", "--wave_audio_s=7",
               f"--warehouse={warehouse_format}"])  # fmt: skip

    assert rc == 1  # not every file has a complete row
    rows = {r["call_id"]: r for r in warehouse.final_calls(out)}
    assert sorted(rows) == ["call-a", "call-b"]
    a, b = rows["call-a"], rows["call-b"]
    # files are cut into 1 s chunks by default (BATCH_CHUNK_MS)
    assert (a["agent_audio_s"], a["customer_audio_s"], a["chunk_count"]) == (3.0, 3.0, 6)
    assert (b["mixed_audio_s"], b["chunk_count"], b["close_reason"]) == (1.0, 1, "end_of_call")
    assert a["start_ms"] == MTIME_S * 1000 - 3000 and a["end_ms"] == MTIME_S * 1000
    assert a["source_topic"] == "recordings" and a["missing_seq_count"] == 0
    letters = sorted((d["stage"], d["reason"], d["call_id"]) for d in warehouse.dead_letters(out))
    assert letters == [
        ("read", "duplicate_call_id", "call-a"), ("read", "recording_too_long", "call-d"),
        ("read", "unreadable_audio", "call-c"), ("read", "unsupported_audio", "call-e"),
    ]  # fmt: skip
    summary = json.loads((out / "batch_summary.json").read_text())
    status = {(Path(f["path"]).parent.name, f["call_id"]): f["status"] for f in summary["files"]}
    assert status == {  # paths run in sorted order: rec/again/call-a.wav comes first
        ("again", "call-a"): "processed", ("rec", "call-a"): "failed",
        ("rec", "call-b"): "processed", ("rec", "call-c"): "failed",
        ("rec", "call-d"): "failed", ("rec", "call-e"): "failed",
    }  # fmt: skip
    assert summary["exit_code"] == 1 and summary["counts"] == {"processed": 2, "failed": 4}
    assert summary["throughput"]["waves"] == 2
    if warehouse_format == "iceberg":
        _the_tables_hold_one_commit_per_wave(out)


def _the_tables_hold_one_commit_per_wave(out: Path) -> None:
    """Iceberg: a wave's rows are one commit per table, not a file per row."""
    from transforms.io.iceberg import CatalogConfig, data_file_paths, load_catalog

    catalog = load_catalog(CatalogConfig.under(str(out)))
    calls = catalog.load_table("callqa.calls")
    assert len(calls.snapshots()) == 1  # the first wave's final rows; the second has none
    assert len(data_file_paths(calls)) == 1
    letters = catalog.load_table("callqa.dead_letters")
    assert len(letters.snapshots()) == len(data_file_paths(letters)) == 2  # a commit a wave
    assert not list(out.rglob("calls/dt=*"))  # no Parquet file per row beside the tables


@pytest.mark.slow
def test_batch_job_transcribes_recordings(prism_location: str, tmp_path: Path) -> None:
    """Historic recordings through the same SegmentSpeech → Transcribe stages: each channel
    is cut once the watermark passes its end (a batch runner may reorder a key's chunks)."""
    from beam_jobs.demo.speech import Turn, scripted_call

    call = scripted_call("rec-spoken", "en", (
        Turn("agent", "Thank you for calling, how can I help you?"),
        Turn("customer", "I would like a refund for my order please."),
        Turn("agent", "Sure, I have issued the refund. Goodbye."),
    ))  # fmt: skip
    rec = tmp_path / "rec"
    rec.mkdir()
    stereo = np.stack([call.audio.channels["agent"], call.audio.channels["customer"]], 1)
    sf.write(rec / "rec-spoken.wav", stereo, 16000)
    out = tmp_path / "out"

    rc = main(["batch", "--runner=PrismRunner", f"--prism_location={prism_location}",
               f"--recordings={rec}/*.wav", f"--output_dir={out}", "--asr=embedded"])  # fmt: skip

    assert rc == 0
    rows = warehouse.transcripts(out)
    assert [(r["call_id"], r["channel"]) for r in rows] == [
        ("rec-spoken", "agent"), ("rec-spoken", "customer"), ("rec-spoken", "agent"),
    ], rows  # fmt: skip
    texts = [r["text"].lower() for r in rows]
    assert "help" in texts[0] and "refund" in texts[1] and "goodbye" in texts[2], texts
    t0 = rows[0]["start_ms"]
    for r, turn in zip(rows, call.turns, strict=True):  # event times follow the recording
        assert abs((r["start_ms"] - t0) / 1000 - (turn.start_s - call.turns[0].start_s)) < 0.5
    (final,) = warehouse.final_calls(out)
    m = final["metrics"]  # the row joins its transcripts (issue 15: it used to carry none)
    assert final["call_id"] == "rec-spoken" and m["transcripts_complete"], m
    assert (m["utterance_count"], m["turn_count"], m["transcript_failures"]) == (3, 3, 0), m
    assert m["agent_talk_s"] > 0 and final["scorecard"]["answers"], final
