"""Element records that flow between pipeline stages (every PCollection element type)."""

from __future__ import annotations

from typing import NamedTuple


class KafkaRecord(NamedTuple):
    """One record as read from Kafka, before any parsing (output of ``ReadAudioChunks``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int  # Kafka record timestamp (CreateTime unless the topic says LogAppendTime)


class AudioChunk(NamedTuple):
    """A validated, decoded chunk (output of ``DecodeAndValidate``).

    ``pcm`` is always 16-bit little-endian mono-or-interleaved PCM at ``sample_rate_hz``:
    G.711 payloads are expanded here so later stages see one format.
    """

    call_id: str
    channel: str  # agent | customer | mixed
    seq: int
    sample_rate_hz: int
    channels: int
    codec: str  # as sent (pcm_s16le, pcm_mulaw, pcm_alaw)
    event_time_ms: int  # capture time of the first sample (or Kafka CreateTime when absent)
    event_time_source: str  # "capture_time" | "kafka_create_time"
    num_samples: int  # samples per channel
    end_of_call: bool
    pcm: bytes
    tenant: str | None
    agent_id: str | None
    queue: str | None
    language_hint: str | None
    topic: str
    partition: int
    offset: int

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.num_samples / self.sample_rate_hz


class DeadLetter(NamedTuple):
    """Anything a stage could not process: where it came from and why (never dropped silently)."""

    stage: str  # decode | aggregate | sink | ...
    reason: str  # a stable machine-readable code, e.g. "unknown_codec", "too_late"
    error_type: str  # exception class or "validation"
    message: str  # one human sentence
    topic: str | None
    partition: int | None
    offset: int | None
    call_id: str | None
    event_time_ms: int | None
    payload_size_bytes: int | None


class CallRow(NamedTuple):
    """One row of the ``calls`` table: a call's state at one emission.

    Key: (call_id, version, is_final, last_offset). ``version`` counts final results: 1 is the
    first final row, 2+ are corrections caused by late chunks. Live rows (``is_final`` false)
    carry the version of the last final row before them (0 while the call is open).
    """

    call_id: str
    version: int
    is_final: bool
    close_reason: str  # live | end_of_call | inactivity | late_correction
    start_ms: int  # event time of the first sample
    end_ms: int  # event time just after the last sample
    agent_audio_s: float
    customer_audio_s: float
    mixed_audio_s: float
    chunk_count: int  # distinct (channel, seq) chunks absorbed
    duplicate_chunks: int  # repeats of an already-seen (channel, seq)
    missing_seq_count: int  # gaps in 0..max(seq) per channel
    missing_seqs: str  # "agent:3-5,9;customer:12" (compact, empty when none)
    tenant: str | None
    agent_id: str | None
    queue: str | None
    language_hint: str | None
    source_topic: str
    source_partition: int
    first_offset: int
    last_offset: int


class ChunkFact(NamedTuple):
    """What the per-call aggregation keeps of one chunk (no audio): its state element."""

    channel: str
    seq: int
    event_time_ms: int
    num_samples: int
    sample_rate_hz: int
    end_of_call: bool
    partition: int
    offset: int


class OffsetAck(NamedTuple):
    """Source offsets whose every effect is durable in the warehouse (safe to commit past)."""

    topic: str
    partition: int
    ranges: tuple[tuple[int, int], ...]  # [start, end) offset ranges, sorted, disjoint


class Checkpoint(NamedTuple):
    """A partition's restart position: start at ``frontier``, skip offsets in ``acked``."""

    frontier: int  # every offset below is done
    acked: tuple[tuple[int, int], ...]  # [start, end) ranges above the frontier, also done


class RowWithAck(NamedTuple):
    """A row for a sink plus the offsets to acknowledge once that row is written.

    One ack per source partition: a call's chunks normally share one, but producers with
    different partitioners (kcat's CRC32, kafka-python's murmur2) can split a key.
    """

    row: CallRow
    acks: tuple[OffsetAck, ...] = ()


class Utterance(NamedTuple):
    """A stretch of one channel's speech, ready for ASR (16-bit mono PCM)."""

    call_id: str
    channel: str
    start_ms: int  # event time of the first sample (carried: RunInference re-stamps outputs)
    end_ms: int
    sample_rate_hz: int
    pcm: bytes
    language_hint: str | None


class Word(NamedTuple):
    """One recognised word with its event-time span (when word timestamps are asked for)."""

    text: str
    start_ms: int
    end_ms: int
    probability: float


class Transcript(NamedTuple):
    """What ASR made of one utterance."""

    call_id: str
    channel: str
    start_ms: int  # event time of the utterance (carried: RunInference re-stamps outputs)
    end_ms: int
    text: str
    language: str  # the model's language code, detected or forced: "en", "zh", ... ("" unknown)
    language_class: str  # "en" | "zh" | "zh-en" (code-switched: both scripts) | "other" | ""
    confidence: float  # mean token log-probability over the utterance (<= 0; higher is better)
    model_id: str
    backend: str  # "faster-whisper" | "transformers"
    words: tuple[Word, ...]  # empty unless word timestamps are enabled
    alternatives: tuple[str, ...]  # n-best after the top hypothesis; empty unless asked
