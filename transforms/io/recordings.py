"""Recordings as contract-v1 chunk events: shared by ``callqa produce`` and the batch job.

Audio files (wav/flac/mp3: anything libsndfile reads) become per-call chunk events ordered by
capture time; several calls interleave as a switch would emit them. ``ReadRecordings`` turns
files into the same ``KafkaRecord`` elements the Kafka source emits, so the batch job over
historic recordings runs exactly the streaming job's stages.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from schemas import audio
from schemas.events import AudioChunkEvent
from schemas.records import DeadLetter, KafkaRecord, RecordingTask, dead_letter
from transforms.core.audio import encode, resample


@dataclass(frozen=True)
class CallAudio:
    """One call's audio: channel role → float samples in [-1, 1] at ``sample_rate_hz``."""

    call_id: str
    sample_rate_hz: int
    channels: dict[str, np.ndarray]
    tenant: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    language_hint: str | None = None


def load_call(
    path: str | Path, call_id: str, roles: Sequence[str] = (audio.ROLE_AGENT, audio.ROLE_CUSTOMER)
) -> CallAudio:
    """Read wav/flac/mp3 (anything libsndfile reads). Mono → ``mixed``; stereo → ``roles``."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[1] == 1:
        channels = {audio.ROLE_MIXED: data[:, 0]}
    elif data.shape[1] == 2:
        channels = {roles[0]: data[:, 0], roles[1]: data[:, 1]}
    else:
        raise ValueError(f"{path}: {data.shape[1]} channels; mono or stereo expected")
    return CallAudio(call_id, int(rate), channels)


def call_events(
    call: CallAudio,
    start_ms: int,
    chunk_ms: int = audio.DEFAULT_CHUNK_MS,
    codec: str = audio.CODEC_PCM_S16LE,
) -> list[AudioChunkEvent]:
    """All chunk events of one call in capture-time order; the last one ends the call."""
    rate = audio.G711_SAMPLE_RATE_HZ if codec != audio.CODEC_PCM_S16LE else call.sample_rate_hz
    if codec == audio.CODEC_PCM_S16LE and rate not in audio.PCM_SAMPLE_RATES_HZ:
        rate = audio.PIPELINE_SAMPLE_RATE_HZ
    per_chunk = rate * chunk_ms // 1000
    out: list[AudioChunkEvent] = []
    for role, samples in call.channels.items():
        samples = resample(samples, call.sample_rate_hz, rate)
        for seq, i in enumerate(range(0, len(samples), per_chunk)):
            out.append(
                AudioChunkEvent(
                    call_id=call.call_id,
                    channel=role,
                    seq=seq,
                    codec=codec,
                    sample_rate_hz=rate,
                    channels=1,
                    capture_time_ms=start_ms + (1000 * i) // rate,
                    end_of_call=False,
                    audio=encode(samples[i : i + per_chunk], codec),
                    tenant=call.tenant,
                    agent_id=call.agent_id,
                    queue=call.queue,
                    language_hint=call.language_hint,
                )
            )
    out.sort(key=lambda e: (e.capture_time_ms or 0, e.channel, e.seq))
    if out:
        out[-1] = out[-1]._replace(end_of_call=True)
    return out


def interleave(streams: Iterable[list[AudioChunkEvent]]) -> Iterator[AudioChunkEvent]:
    """Merge several calls' event lists by capture time (as a switch would emit them)."""
    return heapq.merge(*streams, key=lambda e: e.capture_time_ms or 0)


def synthetic_call(
    call_id: str,
    duration_s: float,
    sample_rate_hz: int = audio.PIPELINE_SAMPLE_RATE_HZ,
    seed: int = 0,
    turn_s: float = 2.0,
) -> CallAudio:
    """A two-party call of alternating 'speech-like' turns (modulated noise) with pauses.

    Deterministic for a given seed: the demo and the tests know exactly what they sent.
    """
    rng = np.random.default_rng(seed)
    n = int(duration_s * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    agent = np.zeros(n, dtype=np.float32)
    customer = np.zeros(n, dtype=np.float32)
    turn = int(turn_s * sample_rate_hz)
    for k, i in enumerate(range(0, n, turn)):
        seg = slice(i, min(n, i + int(turn * 0.8)))
        length = seg.stop - seg.start
        voice = rng.normal(0, 0.1, length) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t[seg]))
        (agent if k % 2 == 0 else customer)[seg] = voice.astype(np.float32)
    return CallAudio(
        call_id,
        sample_rate_hz,
        {audio.ROLE_AGENT: agent, audio.ROLE_CUSTOMER: customer},
        tenant="demo",
        agent_id=f"agent-{seed % 5:02d}",
        queue="support",
        language_hint="zh-en",
    )


# --- the batch job's source: recordings on disk → the Kafka source's element type ---------

READ_STAGE = "read"
DEAD_LETTER_TAG = "dead_letter"


@dataclass(frozen=True)
class RecordingsConfig:
    """How files become chunk records. The event time of a recording's first sample is the
    file's modification time minus its duration (recorders close the file when the call ends).
    """

    chunk_ms: int = audio.DEFAULT_CHUNK_MS
    source_label: str = "recordings"  # stands in for the Kafka topic in lineage columns
    #: Longer recordings are dead-lettered (``recording_too_long``): a whole recording is held
    #: in one worker's memory (about 1 GB an hour of stereo float samples as it is cut).
    max_recording_s: float = 4 * 3600.0

    def __post_init__(self) -> None:
        if not 10 <= self.chunk_ms <= audio.MAX_CHUNK_MS:
            raise ValueError(f"chunk_ms must be within [10, {audio.MAX_CHUNK_MS}]")
        if self.max_recording_s <= 0:
            raise ValueError("max_recording_s must be > 0")


class RecordingInfo(NamedTuple):
    """What a recording's header says, read without decoding its audio."""

    duration_s: float
    channels: int
    sample_rate_hz: int


def probe_recording(path: str) -> RecordingInfo:
    """The header of a wav/flac/mp3 file; raises what libsndfile raises for anything else."""
    import soundfile as sf

    info = sf.info(path)
    return RecordingInfo(float(info.duration), int(info.channels), int(info.samplerate))


def recording_problem(
    info: RecordingInfo | Exception, cfg: RecordingsConfig
) -> tuple[str, str] | None:
    """Why a recording cannot be processed, as (dead-letter reason, message), or None."""
    if isinstance(info, Exception):
        return "unreadable_audio", f"not audio libsndfile reads ({type(info).__name__}: {info})"
    if info.channels not in (1, 2):
        return "unsupported_audio", (
            f"{info.channels} channels; mono (one mixed channel) or stereo (agent left, "
            "customer right) expected"
        )
    if info.duration_s <= 0:
        return "empty_recording", "no samples"
    if info.duration_s > cfg.max_recording_s:
        return "recording_too_long", (
            f"{info.duration_s:.0f} s is over --max_recording_s={cfg.max_recording_s:.0f}"
        )
    return None


def recording_records(
    path: str, index: int, cfg: RecordingsConfig
) -> Iterator[tuple[KafkaRecord, int]]:
    """One recording as (KafkaRecord, event time ms) pairs: partition = file index, offset =
    chunk number, key = the file's stem as call id, headers = contract v1."""
    call = load_call(path, Path(path).stem)
    duration_ms = max(1000 * len(s) // call.sample_rate_hz for s in call.channels.values())
    start_ms = int(os.stat(path).st_mtime * 1000) - duration_ms
    for offset, event in enumerate(call_events(call, start_ms, cfg.chunk_ms)):
        record = KafkaRecord(
            topic=cfg.source_label,
            partition=index,
            offset=offset,
            key=event.kafka_key(),
            value=event.audio,
            headers=tuple(event.kafka_headers()),
            timestamp_ms=event.capture_time_ms or start_ms,
        )
        yield record, record.timestamp_ms


class ReadRecordingFn(beam.DoFn):
    """``RecordingTask`` → ``KafkaRecord`` per chunk (event-time stamped); a file that cannot be
    processed (``recording_problem``, or a call id another file of the run already has) → one
    ``dead_letter``. Metrics: ``recordings_read``, ``recordings_dead_lettered``."""

    def __init__(self, cfg: RecordingsConfig) -> None:
        self._cfg = cfg
        self.read = Metrics.counter("callqa.recordings", "recordings_read")
        self.failed = Metrics.counter("callqa.recordings", "recordings_dead_lettered")

    def process(self, task: RecordingTask) -> Iterator[Any]:
        problem: tuple[str, str] | None = None
        records: list[tuple[KafkaRecord, int]] = []
        error_type = "invalid_recording"
        if task.duplicate_of is not None:
            problem = ("duplicate_call_id", f"call id {task.call_id!r} is {task.duplicate_of}'s")
        else:
            try:
                info: RecordingInfo | Exception = probe_recording(task.path)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop a backfill
                info = exc
            problem = recording_problem(info, self._cfg)
            if isinstance(info, Exception):
                error_type = type(info).__name__
            if problem is None:
                try:
                    records = list(recording_records(task.path, task.file_index, self._cfg))
                except Exception as exc:  # noqa: BLE001 - a header can be fine, the data not
                    problem, error_type = ("unreadable_audio", str(exc)), type(exc).__name__
        if problem is not None:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG, self._dead_letter(task, *problem, error_type)
            )
            return
        self.read.inc()
        for record, event_ms in records:
            yield TimestampedValue(record, event_ms / 1000.0)

    def _dead_letter(
        self, task: RecordingTask, reason: str, message: str, error_type: str
    ) -> DeadLetter:
        size = os.path.getsize(task.path) if os.path.exists(task.path) else None
        return dead_letter(
            READ_STAGE,
            reason,
            error_type,
            f"{task.path}: {message}",
            call_id=task.call_id,
            event_time_ms=None,
            topic=self._cfg.source_label,
            partition=task.file_index,
            size_bytes=size,
        )


def recording_tasks(paths: Sequence[str]) -> list[RecordingTask]:
    """The run's files in order; a stem seen before is a duplicate call id (two calls would
    merge into one row)."""
    first: dict[str, str] = {}
    tasks = []
    for index, path in enumerate(paths):
        call_id = Path(path).stem
        tasks.append(RecordingTask(index, path, call_id, first.get(call_id)))
        first.setdefault(call_id, path)
    return tasks


class ReadRecordings(beam.PTransform):
    """``RecordingTask``s (``recording_tasks``) → ``records`` (KafkaRecord, as the Kafka source
    emits) and ``dead_letter``."""

    def __init__(self, tasks: Sequence[RecordingTask], cfg: RecordingsConfig) -> None:
        super().__init__()
        self._tasks = list(tasks)
        self._cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            pbegin
            | "Tasks" >> beam.Create(self._tasks)
            | "Read"
            >> beam.ParDo(ReadRecordingFn(self._cfg)).with_outputs(DEAD_LETTER_TAG, main="records")
        )
