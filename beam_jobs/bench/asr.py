"""ASR benchmarks, measured side by side in one run on the same model and audio.

``callqa bench asr``: the backend called directly in a loop (one utterance per call), the
backend batched (length-sorted batches of ``--batch-size``), and the full Beam stage on Prism
(``Transcribe``: RunInference with its batching, length buckets and failure output). The
stage's time is the difference between a run over N+1 utterances and a run over 1, so Prism
start-up and the model load cancel out. Audio: the demo calls' turns (espeak-ng English,
Mandarin, code-switched), repeated ``--repeat`` times.

``callqa bench latency``: end of utterance → final transcript on the Kafka topic, with the
streaming job on Prism fed by Kafka at real-time pace (the demo's English calls).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from beam_jobs.ceiling import batched_seconds
from beam_jobs.demo.calls import demo_calls
from beam_jobs.demo.live import LiveFollower, latencies_s, percentile
from beam_jobs.demo.speech import ScriptedCall
from schemas.audio import DEFAULT_CHUNK_MS
from schemas.records import Utterance
from transforms.asr.options import AsrOptions, utterance_seconds
from transforms.asr.transcribe import model_handler
from transforms.core.audio import encode

_PAD_S = 0.2  # VAD-like padding around each turn


def turn_utterances(calls: list[ScriptedCall], repeat: int) -> list[Utterance]:
    """Each scripted turn as one utterance (as SegmentSpeech would cut it)."""
    hints = {"en": "en", "zh": "zh", "zh-en": "zh"}
    out: list[Utterance] = []
    for r in range(repeat):
        for call in calls:
            for turn in call.turns:
                x = call.audio.channels[turn.role]
                a = max(0, int((turn.start_s - _PAD_S) * 16000))
                b = min(len(x), int((turn.end_s + _PAD_S) * 16000))
                start = 1_800_000_000_000 + 100_000 * len(out)
                out.append(
                    Utterance(f"{call.audio.call_id}-r{r}", turn.role, start,
                              start + 1000 * (b - a) // 16000, 16000,
                              encode(x[a:b], "pcm_s16le"), hints[call.language])
                )  # fmt: skip
    return out


def _stage_run(opts: AsrOptions, utts: list[Utterance], prism: bool) -> tuple[float, int]:
    """Wall seconds of a bounded pipeline Create → Transcribe on Prism (or Beam's in-process
    FnApiRunner), and its batches."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from beam_jobs.runner import runner_options
    from transforms.asr.transcribe import Transcribe

    t0 = time.perf_counter()
    if prism:
        p = beam.Pipeline(options=PipelineOptions(runner_options([])))
    else:
        p = beam.Pipeline(runner=FnApiRunner())
    out = p | beam.Create(utts, reshuffle=False) | Transcribe(opts)
    _ = out["transcripts"] | "Count" >> beam.combiners.Count.Globally()
    result = p.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - t0
    query = result.metrics().query(MetricsFilter().with_name("inference_batch_latency_micro_secs"))
    batches = sum(d.committed.count for d in query["distributions"] if d.committed)
    return elapsed, batches


def bench_asr(args: argparse.Namespace) -> int:
    from beam_jobs.config import resolve_asr_dir

    model_dir = resolve_asr_dir(args.asr)
    print("speaking the demo calls ...")
    utts = turn_utterances(demo_calls(), args.repeat)
    audio_s = sum(utterance_seconds(u) for u in utts)
    opts = AsrOptions(
        model_dir=model_dir,
        max_batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        beam_size=args.beam_size,
        queues=1,  # a bounded run, as `callqa batch` runs it: one queue on every thread
    )
    handler = model_handler(opts)
    t0 = time.perf_counter()
    model = handler.load_model()
    load_s = time.perf_counter() - t0
    list(handler.run_inference(utts[:1], model))  # warm-up
    print(f"{len(utts)} utterances, {audio_s:.0f} s of audio; model {model_dir} "
          f"loaded in {load_s:.1f} s")  # fmt: skip

    t0 = time.perf_counter()
    for u in utts:
        list(handler.run_inference([u], model))
    direct_s = time.perf_counter() - t0

    arrival_s = batched_seconds(handler, model, utts, args.batch_size)
    batched_s = batched_seconds(
        handler, model, sorted(utts, key=utterance_seconds), args.batch_size
    )

    one_s, _ = _stage_run(opts, utts[:1], prism=True)
    all_s, stage_batches = _stage_run(opts, utts[:1] + utts, prism=True)
    stage_s = max(all_s - one_s, 1e-9)
    fn_one_s, _ = _stage_run(opts, utts[:1], prism=False)
    fn_all_s, _ = _stage_run(opts, utts[:1] + utts, prism=False)
    fn_stage_s = max(fn_all_s - fn_one_s, 1e-9)

    rows = [
        ("backend direct, 1 per call", direct_s),
        (f"backend batched ({args.batch_size}), arrival order", arrival_s),
        (f"backend batched ({args.batch_size}), length-sorted", batched_s),
        ("Beam stage on Prism (RunInference)", stage_s),
        ("Beam stage on FnApiRunner (in process)", fn_stage_s),
    ]
    print()
    print(f"{'path':<44}{'s':>8}{'RTF':>8}{'audio s/s':>11}{'vs direct':>11}")
    for name, secs in rows:
        print(f"{name:<44}{secs:>8.1f}{secs / audio_s:>8.3f}{audio_s / secs:>11.1f}"
              f"{direct_s / secs:>11.2f}")  # fmt: skip
    print()
    print(f"batched / unbatched: {direct_s / arrival_s:.2f}x in arrival order, "
          f"{direct_s / batched_s:.2f}x length-sorted (goal >= 1.5 on CPU)")  # fmt: skip
    for name, secs in (("Prism", stage_s), ("FnApiRunner", fn_stage_s)):
        print(f"stage on {name} / direct batched: {arrival_s / secs:.2f} vs arrival order, "
              f"{batched_s / secs:.2f} vs length-sorted (goal >= 0.9)")  # fmt: skip
    print(f"Prism runs: {one_s:.1f} s for 1 utterance, {all_s:.1f} s for {len(utts) + 1} "
          f"in {stage_batches} batches (direct: {-(-len(utts) // args.batch_size)})")  # fmt: skip
    return 0


PROFILES: Final = (
    ("job defaults (beam 5)", ()),
    ("greedy (beam 1)", ("--asr_beam_size=1",)),
)


def bench_latency(args: argparse.Namespace) -> int:
    from beam_jobs.services.local import create_topic, default_broker, unique_name

    calls = [c for c in demo_calls() if c.language == "en"][: args.calls]
    broker = default_broker()
    broker.start()
    rows = []
    for name, profile in PROFILES:
        topic, live = unique_name("callqa.bench-lat"), unique_name("callqa.bench-live")
        create_topic(broker.bootstrap_servers, topic, 4)
        create_topic(broker.bootstrap_servers, live, 1)
        extra = [f"--asr={args.asr}", *profile, *args.job_args]
        print(f"{name}: {len(calls)} calls at real-time pace, job options {' '.join(extra)}")
        lat = _latency_run(broker.bootstrap_servers, topic, live, calls, extra)
        rows.append((name, lat))
    print()
    print(f"{'profile':<26}{'utterances':>11}{'p50 s':>8}{'p95 s':>8}{'max s':>8}")
    for name, lat in rows:
        if not lat:
            print(f"{name:<26}{0:>11}")
            continue
        print(f"{name:<26}{len(lat):>11}{percentile(lat, 0.5):>8.2f}"
              f"{percentile(lat, 0.95):>8.2f}{max(lat):>8.2f}")  # fmt: skip
    print("\nlatency: from the end of an utterance (as cut, incl. padding) to its transcript "
          "on the transcripts topic (goal p95 <= 2 s)")  # fmt: skip
    return 0 if all(lat for _, lat in rows) else 1


def _latency_run(
    bootstrap: str, topic: str, live: str, calls: list[ScriptedCall], extra: list[str]
) -> list[float]:
    from beam_jobs.demo.producer import call_events, interleave, new_producer, send_events
    from beam_jobs.pipeline import submit

    work = Path(tempfile.mkdtemp(prefix="callqa-bench-lat-"))
    argv = [
        "--streaming",
        f"--kafka_bootstrap_servers={bootstrap}",
        f"--kafka_topic={topic}",
        f"--kafka_group_id={topic}",
        f"--output_dir={work}",
        f"--transcripts_topic={live}",
        "--live_interval_s=0",
        *extra,
    ]
    result, _ = submit(argv)
    follower = LiveFollower(bootstrap, live)
    try:
        # Warm-up: a first call loads the models; its utterances are not counted. Its capture
        # times lie in the past: future event times would move the watermark ahead of the
        # measured calls and make them late.
        warm = _renamed(calls[0], "warmup")
        past_ms = int(time.time() * 1000) - 1000 * len(warm.channels["agent"]) // 16000 - 5000
        send_events(new_producer(bootstrap), topic, call_events(warm, past_ms), progress=False)
        _wait_for(follower, len(calls[0].turns), timeout_s=120)
        time.sleep(2)
        skip = len(follower.events)
        start_ms = int(time.time() * 1000) + 1000
        streams = [call_events(c.audio, start_ms + 2000 * i) for i, c in enumerate(calls)]
        turns = sum(len(c.turns) for c in calls)
        send_events(new_producer(bootstrap), topic, interleave(streams), realtime=True,
                    progress=False)  # fmt: skip
        _wait_for(follower, skip + turns, timeout_s=60)
    finally:
        follower.close()
        result.cancel()
        shutil.rmtree(work, ignore_errors=True)
    measured = [(t, e) for t, e in follower.events[skip:] if e["call_id"] != "warmup"]
    return latencies_s(measured, DEFAULT_CHUNK_MS)


def _renamed(call: ScriptedCall, call_id: str) -> Any:
    from dataclasses import replace

    return replace(call.audio, call_id=call_id)


def _wait_for(follower: LiveFollower, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(follower.events) < n and time.monotonic() < deadline:
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="callqa bench asr|latency", description=__doc__)
    sub = ap.add_subparsers(dest="which", required=True)
    a = sub.add_parser("asr", help="direct vs batched vs the Beam stage")
    a.add_argument("--asr", default="embedded", help="embedded | a model directory")
    a.add_argument("--repeat", type=int, default=2)
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--beam-size", type=int, default=5)
    a.add_argument("--max-new-tokens", type=int, default=128)
    a.set_defaults(func=bench_asr)
    lat = sub.add_parser("latency", help="end of utterance → transcript on Kafka")
    lat.add_argument("--asr", default="embedded")
    lat.add_argument("--calls", type=int, default=2)
    lat.add_argument("job_args", nargs="*", help="extra job options, e.g. --asr_beam_size=1")
    lat.set_defaults(func=bench_latency)
    args = ap.parse_args(argv)
    return int(args.func(args))
