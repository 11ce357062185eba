"""``callqa bench batch``: the batch job over a folder of recordings against the ASR ceiling.

A folder of two-party stereo recordings totalling at least ``--minutes`` of audio (the demo's
English, Mandarin and zh/en calls, spoken by espeak-ng, each written under several call ids
with its turns' pauses varied; cached under ``--corpus-dir``) goes through ``callqa batch`` with
its default options (Prism, ``--asr=embedded``). Then the same utterances the job transcribed
are cut again from the files and transcribed by the backend batched by hand (length-sorted
batches of the job's batch size), with nothing else running: the ceiling. Both figures are
measured in one run on one machine; the report is their ratio (goal >= 0.75).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Final

import numpy as np

from beam_jobs import warehouse
from beam_jobs.config import resolve_asr_dir
from beam_jobs.corpus.scripts import CALLS
from beam_jobs.demo.speech import Turn, scripted_call
from beam_jobs.services.local import cache_dir

_MTIME_S: Final = 1_764_072_000  # 2025-11-25T12:00:00Z


def corpus_dir(minutes: float) -> Path:
    """The cached corpus of at least ``minutes`` (``bench capacity`` draws its calls from it)."""
    return cache_dir() / f"bench-batch-{minutes:g}min"


def build_corpus(folder: Path, minutes: float, seed: int = 7) -> list[Path]:
    """Stereo wav files (agent left, customer right) totalling at least ``minutes`` of audio:
    each corpus call script under new call ids, spoken by espeak-ng (quick to make in bulk),
    every pause drawn again (0.3-3 s, some overtalk). Written once: an existing complete
    folder is reused."""
    done = folder / "COMPLETE"
    if done.exists():
        return sorted(folder.glob("*.wav"))
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total_s, i = 0.0, 0
    while total_s < minutes * 60:
        script = CALLS[i % len(CALLS)]
        turns = tuple(
            Turn(t.role, t.text, float(rng.choice([-0.8, 0.3, 0.6, 1.0, 1.5, 3.0])))
            for t in script.lines
        )
        call = scripted_call(f"bench-{i:04d}-{script.language}", script.language, turns)
        path = folder / f"{call.audio.call_id}.wav"
        ch = call.audio.channels
        sf.write(path, np.stack([ch["agent"], ch["customer"]], 1), 16000)
        os.utime(path, (_MTIME_S + 60 * i, _MTIME_S + 60 * i))
        total_s += len(ch["agent"]) / 16000
        i += 1
    done.write_text(f"{i} calls, {total_s:.0f} s\n")
    return sorted(folder.glob("*.wav"))


def bench_batch(args: argparse.Namespace) -> int:
    from beam_jobs.batch import run_batch
    from beam_jobs.ceiling import batched_speech_rate, utterances_from_recordings
    from transforms.asr.options import AsrOptions

    corpus = Path(args.corpus_dir) if args.corpus_dir else corpus_dir(args.minutes)
    print(f"corpus: {corpus} (at least {args.minutes:g} min of two-party recordings) ...")
    files = build_corpus(corpus, args.minutes)
    out = Path(tempfile.mkdtemp(prefix="callqa-bench-batch-"))
    try:
        argv = [f"--recordings={corpus}/*.wav", f"--output_dir={out}", f"--asr={args.asr}",
                "--ceiling_sample_s=0", "--progress=off", *args.job_args]  # fmt: skip
        print(f"callqa batch {' '.join(argv)}")
        t0 = time.perf_counter()
        code = run_batch(argv)
        job_s = time.perf_counter() - t0
        rows = warehouse.final_calls(out)
        summary = json.loads((out / "batch_summary.json").read_text())
        audio_s = sum(f["audio_s"] for f in summary["files"] if f["status"] == "processed")
        transcripts = warehouse.transcripts(out)
        paths = {p.stem: str(p) for p in files}
        starts = {r["call_id"]: r["start_ms"] for r in rows}
        utts = utterances_from_recordings(transcripts, paths, starts, float("inf"))
        opts = AsrOptions(model_dir=resolve_asr_dir(args.asr))
        print(f"ceiling: the backend batched by hand on the job's {len(utts)} utterances ...")
        t0 = time.perf_counter()
        rate = batched_speech_rate(opts, utts)
        ceiling_wall_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    speech_s = sum((t["end_ms"] - t["start_ms"]) / 1000 for t in transcripts)
    job_rate = audio_s / job_s
    ceiling = audio_s / (speech_s / rate)
    print()
    print(f"{len(files)} recordings, {audio_s / 60:.1f} min of audio, {speech_s / 60:.1f} min "
          f"of speech in {len(transcripts)} utterances; exit status {code}")  # fmt: skip
    print(f"{'path':<52}{'wall s':>8}{'audio s/s':>11}{'vs ceiling':>12}")
    label = f"callqa batch ({' '.join(args.job_args) or 'defaults'}), start to exit"
    print(f"{label:<52}{job_s:>8.1f}{job_rate:>11.2f}{job_rate / ceiling:>12.2f}")
    print(f"{'backend batched by hand, length-sorted (ceiling)':<52}"
          f"{audio_s / ceiling:>8.1f}{ceiling:>11.2f}{1.0:>12.2f}")  # fmt: skip
    print(f"\n(ceiling measured in {ceiling_wall_s:.0f} s incl. model load; goal: job >= 0.75 "
          "of the ceiling)")  # fmt: skip
    return code


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="callqa bench batch", description=__doc__)
    ap.add_argument("--minutes", type=float, default=30.0, help="audio in the corpus, at least")
    ap.add_argument("--asr", default="embedded", help="embedded | a model directory")
    ap.add_argument("--corpus-dir", default="", help="default: the callqa cache")
    ap.add_argument("job_args", nargs="*", help="extra batch-job options (named in the report)")
    return bench_batch(ap.parse_args(argv))
