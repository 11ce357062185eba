"""``DecodeAndValidate``: ``KafkaRecord`` → ``AudioChunk`` (+ ``DeadLetter`` for bad events);
``GroupChunks``: ``AudioChunk`` → ``ChunkRun``, a (call, channel)'s chunks of one bundle.

Validation follows contract v1 (``schemas/events.py``). Every rejected record becomes one
dead letter with a stable ``reason`` code; nothing raises out of this stage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from schemas import audio, events
from schemas.records import AudioChunk, ChunkRun, DeadLetter, KafkaRecord, dead_letter
from transforms.core.audio import to_pcm_s16le

STAGE: Final = "decode"
DEAD_LETTER_TAG: Final = "dead_letter"
_NS: Final = "callqa.decode"


class InvalidChunk(ValueError):
    """A record that breaks the contract; ``reason`` is the dead-letter code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _text(headers: dict[str, bytes], name: str) -> str | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidChunk("bad_header", f"header {name!r} is not UTF-8") from exc


def _int(headers: dict[str, bytes], name: str, reason: str, lo: int, hi: int) -> int | None:
    text = _text(headers, name)
    if text is None:
        return None
    # Contract: ASCII digits only, no leading zeros (int() would also take "+5", " 5", "1_0").
    if not events.DECIMAL.fullmatch(text):
        raise InvalidChunk(reason, f"header {name}={text!r} is not a plain decimal integer")
    value = int(text)
    if not lo <= value < hi:
        raise InvalidChunk(reason, f"header {name}={value} is outside [{lo}, {hi})")
    return value


def parse_record(rec: KafkaRecord) -> AudioChunk:
    """Validate one Kafka record against contract v1 and decode its audio.

    Raises ``InvalidChunk`` with a reason code for any violation.
    """
    if not rec.key:
        raise InvalidChunk("missing_key", "the Kafka key (call id) is empty")
    try:
        call_id = rec.key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidChunk("bad_key", "the Kafka key (call id) is not UTF-8") from exc
    if len(rec.key) > events.MAX_CALL_ID_BYTES or not call_id.isprintable():
        raise InvalidChunk("bad_key", "the call id must be 1..128 bytes of printable UTF-8")
    headers: dict[str, bytes] = {}
    for name, value in rec.headers:
        if name in headers:
            raise InvalidChunk("bad_header", f"header {name!r} appears more than once")
        headers[name] = value
    version = _text(headers, events.H_SCHEMA_VERSION)
    if version is not None and version not in events.SUPPORTED_SCHEMA_VERSIONS:
        raise InvalidChunk(
            "unsupported_schema_version",
            f"schema_version {version!r} is not supported (this build reads "
            f"{sorted(events.SUPPORTED_SCHEMA_VERSIONS)})",
        )
    missing = [h for h in events.REQUIRED_HEADERS if h not in headers]
    if missing:
        raise InvalidChunk("missing_header", f"required header(s) missing: {', '.join(missing)}")
    header_call_id = _text(headers, events.H_CALL_ID)
    if header_call_id is not None and header_call_id != call_id:
        raise InvalidChunk("call_id_mismatch", "header call_id differs from the Kafka key")
    channel = _text(headers, events.H_CHANNEL)
    if channel not in audio.ROLES:
        raise InvalidChunk("bad_channel", f"channel {channel!r} is not one of {audio.ROLES}")
    seq = _int(headers, events.H_SEQ, "bad_seq", 0, 1_000_000_000)
    codec = _text(headers, events.H_CODEC)
    if codec not in audio.CODECS:
        raise InvalidChunk("unknown_codec", f"codec {codec!r} is not one of {audio.CODECS}")
    rate = _int(headers, events.H_SAMPLE_RATE_HZ, "bad_sample_rate", 1, 1_000_000)
    allowed = (audio.G711_SAMPLE_RATE_HZ,) if codec != audio.CODEC_PCM_S16LE else None
    if rate not in (allowed or audio.PCM_SAMPLE_RATES_HZ):
        raise InvalidChunk("bad_sample_rate", f"sample_rate_hz {rate} is not valid for {codec}")
    n_channels = _int(headers, events.H_CHANNELS, "bad_channels", 1, 3)
    if n_channels == 2 and channel != audio.ROLE_MIXED:
        raise InvalidChunk("bad_channels", "2-channel payloads are only allowed with channel=mixed")
    capture = _int(
        headers,
        events.H_CAPTURE_TIME_MS,
        "bad_capture_time",
        events.MIN_EVENT_MS,
        events.MAX_EVENT_MS,
    )
    eoc_text = _text(headers, events.H_END_OF_CALL)
    eoc_text = "false" if eoc_text is None else eoc_text
    if eoc_text not in ("true", "false"):
        raise InvalidChunk("bad_end_of_call", f"end_of_call {eoc_text!r} is not true/false")
    end_of_call = eoc_text == "true"
    hint = _text(headers, events.H_LANGUAGE_HINT)
    if hint is not None and hint not in events.LANGUAGE_HINTS:
        raise InvalidChunk(
            "bad_language_hint", f"language_hint {hint!r} is not in {events.LANGUAGE_HINTS}"
        )
    assert seq is not None and rate is not None and n_channels is not None  # required headers
    payload = rec.value or b""
    frame = audio.BYTES_PER_SAMPLE[codec] * n_channels
    if not payload and not end_of_call:
        raise InvalidChunk("empty_payload", "the audio payload is empty")
    if len(payload) % frame:
        raise InvalidChunk(
            "truncated_pcm",
            f"payload of {len(payload)} bytes is not a whole number of {frame}-byte frames",
        )
    num_samples = len(payload) // frame
    if 1000 * num_samples > audio.MAX_CHUNK_MS * rate:
        raise InvalidChunk("chunk_too_long", f"chunk is longer than {audio.MAX_CHUNK_MS} ms")
    return AudioChunk(
        call_id=call_id,
        channel=channel,
        seq=seq,
        sample_rate_hz=rate,
        channels=n_channels,
        codec=codec,
        event_time_ms=capture if capture is not None else rec.timestamp_ms,
        event_time_source="capture_time" if capture is not None else "kafka_create_time",
        num_samples=num_samples,
        end_of_call=end_of_call,
        pcm=to_pcm_s16le(payload, codec),
        tenant=_text(headers, events.H_TENANT),
        agent_id=_text(headers, events.H_AGENT_ID),
        queue=_text(headers, events.H_QUEUE),
        language_hint=hint,
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
    )


def dead_letter_for(
    rec: KafkaRecord, stage: str, reason: str, error_type: str, message: str
) -> DeadLetter:
    call_id = None
    if rec.key:
        call_id = rec.key.decode("utf-8", errors="replace")[: events.MAX_CALL_ID_BYTES]
    return dead_letter(
        stage,
        reason,
        error_type,
        message,
        call_id=call_id,
        event_time_ms=rec.timestamp_ms,
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        size_bytes=len(rec.value or b""),
    )


class DecodeAndValidateFn(beam.DoFn):
    """``KafkaRecord`` → ``AudioChunk``; rejects go to the ``dead_letter`` output."""

    def __init__(self) -> None:
        self.chunks_in = Metrics.counter(_NS, "chunks_in")
        self.chunks_valid = Metrics.counter(_NS, "chunks_valid")
        self.chunks_dead_lettered = Metrics.counter(_NS, "chunks_dead_lettered")

    def process(self, rec: KafkaRecord) -> Iterator[object]:
        self.chunks_in.inc()
        try:
            chunk = parse_record(rec)
        except InvalidChunk as exc:
            self.chunks_dead_lettered.inc()
            Metrics.counter(_NS, f"dead_letter_{exc.reason}").inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG, dead_letter_for(rec, STAGE, exc.reason, "validation", str(exc))
            )
            return
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not kill the job
            self.chunks_dead_lettered.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                dead_letter_for(rec, STAGE, "decode_error", type(exc).__name__, str(exc)),
            )
            return
        self.chunks_valid.inc()
        yield TimestampedValue(chunk, chunk.event_time_ms / 1000.0)


class DecodeAndValidate(beam.PTransform):
    """``PCollection[KafkaRecord]`` → tagged outputs ``chunks`` (AudioChunk), ``dead_letter``."""

    def expand(self, records: beam.PCollection[KafkaRecord]) -> beam.pvalue.DoOutputsTuple:
        return records | "Decode" >> beam.ParDo(DecodeAndValidateFn()).with_outputs(
            DEAD_LETTER_TAG, main="chunks"
        )


#: A run never holds more chunks than this (a bundle's worth is usually far fewer).
MAX_RUN_CHUNKS: Final = 600


class GroupChunksFn(beam.DoFn):
    """Gathers a bundle's chunks per (window, call, channel) and hands each group over as one
    ``ChunkRun`` when the bundle finishes (or at ``MAX_RUN_CHUNKS``), stamped with its
    earliest chunk's time: the bundle's inputs hold the watermark until then, so no run is
    late where its chunks would not have been.

    Fused after the source, this costs a function call per chunk; after it, the keyed stages
    get one element per channel and bundle instead of one per 100 ms chunk (``bench ingest``).
    Metric: ``chunk_runs`` (runs handed over; ``chunks_valid`` / it is the mean run length)."""

    def __init__(self) -> None:
        self.runs = Metrics.counter(_NS, "chunk_runs")

    def start_bundle(self) -> None:
        self._open: dict[tuple[Any, str, str], tuple[int, list[AudioChunk]]] = {}

    def process(
        self,
        chunk: AudioChunk,
        ts: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue]:
        key = (window, chunk.call_id, chunk.channel)
        micros, chunks = self._open.get(key, (ts.micros, []))
        chunks.append(chunk)
        self._open[key] = (min(micros, ts.micros), chunks)
        if len(chunks) >= MAX_RUN_CHUNKS:
            yield self._run(key, *self._open.pop(key))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for key, (micros, chunks) in self._open.items():
            yield self._run(key, micros, chunks)
        self._open = {}

    def _run(self, key: tuple[Any, str, str], micros: int, chunks: list[AudioChunk]) -> Any:
        self.runs.inc()
        return WindowedValue(ChunkRun(tuple(chunks)), Timestamp(micros=micros), (key[0],))


class GroupChunks(beam.PTransform):
    """``PCollection[AudioChunk]`` → ``PCollection[ChunkRun]`` (``GroupChunksFn``)."""

    def expand(self, chunks: beam.PCollection[AudioChunk]) -> beam.PCollection[ChunkRun]:
        return chunks | "Group" >> beam.ParDo(GroupChunksFn()).with_output_types(ChunkRun)
