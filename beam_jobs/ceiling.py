"""The ASR-bound ceiling: the backend called by hand in length-sorted batches, with nothing
else running, in seconds of speech per second. Benchmarks and the batch job report their
throughput as a fraction of it, measured in the same run (machines of one kind differ 4-6x)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from schemas.audio import PIPELINE_SAMPLE_RATE_HZ
from schemas.records import Utterance
from transforms.asr.options import AsrOptions, utterance_seconds
from transforms.asr.transcribe import model_handler
from transforms.core.audio import encode, resample
from transforms.io.recordings import load_call


def batched_seconds(handler: Any, model: Any, utts: Sequence[Utterance], batch_size: int) -> float:
    """Wall seconds to transcribe ``utts`` in batches of ``batch_size``, in the given order."""
    t0 = time.perf_counter()
    for i in range(0, len(utts), batch_size):
        list(handler.run_inference(list(utts[i : i + batch_size]), model))
    return time.perf_counter() - t0


def batched_speech_rate(opts: AsrOptions, utts: Sequence[Utterance]) -> float:
    """Speech seconds per second of the backend batched by hand (length-sorted batches of
    ``opts.max_batch_size``), after loading the model and one warm-up call."""
    handler = model_handler(opts)
    model = handler.load_model()
    list(handler.run_inference(list(utts[:1]), model))  # warm-up
    ordered = sorted(utts, key=utterance_seconds)
    secs = batched_seconds(handler, model, ordered, opts.max_batch_size)
    return sum(utterance_seconds(u) for u in utts) / max(secs, 1e-9)


def one_at_a_time_seconds(opts: AsrOptions, utts: Sequence[Utterance]) -> list[float]:
    """Wall seconds of each utterance decoded alone, one after another, with nothing else
    running: the decode's share of the latency floor (``opts`` as the stream decodes, e.g.
    one thread per queue on a CPU), after loading the model and one warm-up call."""
    handler = model_handler(opts)
    model = handler.load_model()
    list(handler.run_inference(list(utts[:1]), model))  # warm-up
    seconds = []
    for utt in utts:
        t0 = time.perf_counter()
        list(handler.run_inference([utt], model))
        seconds.append(time.perf_counter() - t0)
    return seconds


def utterances_from_recordings(
    transcripts: Sequence[Mapping[str, Any]],
    paths: Mapping[str, str],
    call_start_ms: Mapping[str, int],
    max_speech_s: float,
) -> list[Utterance]:
    """The utterances the job transcribed (transcript rows: call, channel, start, end), cut
    again from the recordings at ``paths`` (call id → file) at 16 kHz, up to ``max_speech_s``
    of speech, spread over the calls in turn."""
    by_call: dict[str, list[Mapping[str, Any]]] = {}
    for t in transcripts:
        if t["call_id"] in paths and t["call_id"] in call_start_ms:
            by_call.setdefault(t["call_id"], []).append(t)
    queues: list[Iterator[Mapping[str, Any]]] = [iter(rows) for rows in by_call.values()]
    chosen: list[Mapping[str, Any]] = []
    total = 0.0
    while queues and total < max_speech_s:
        for q in list(queues):
            t = next(q, None)  # type: ignore[arg-type]
            if t is None:
                queues.remove(q)
                continue
            chosen.append(t)
            total += (t["end_ms"] - t["start_ms"]) / 1000
    channels: dict[str, dict[str, np.ndarray]] = {}
    out = []
    for t in chosen:
        call_id = t["call_id"]
        if call_id not in channels:
            call = load_call(paths[call_id], call_id)
            channels[call_id] = {
                role: resample(x, call.sample_rate_hz, PIPELINE_SAMPLE_RATE_HZ)
                for role, x in call.channels.items()
            }
        x = channels[call_id][t["channel"]]
        a = (t["start_ms"] - call_start_ms[call_id]) * PIPELINE_SAMPLE_RATE_HZ // 1000
        b = (t["end_ms"] - call_start_ms[call_id]) * PIPELINE_SAMPLE_RATE_HZ // 1000
        out.append(
            Utterance(call_id, t["channel"], t["start_ms"], t["end_ms"], PIPELINE_SAMPLE_RATE_HZ,
                      encode(x[max(0, a) : b], "pcm_s16le"), None)  # as files: no hint
        )  # fmt: skip
    return out
