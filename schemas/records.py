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


class ChunkRun(NamedTuple):
    """One (call, channel)'s chunks that were read together (output of ``GroupChunks``: one
    source bundle), in the order they were read. The keyed stages take a run as one element
    and step through its chunks in order, so the runner moves, encodes and schedules one
    element instead of one per 100 ms chunk."""

    chunks: tuple[AudioChunk, ...]  # never empty; one call id and channel


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


#: Dead-letter messages are capped: a stack of nested errors can run to kilobytes.
MAX_DEAD_LETTER_MESSAGE_CHARS = 500


def dead_letter(
    stage: str,
    reason: str,
    error: str | type | BaseException,
    message: str,
    *,
    call_id: str | None,
    event_time_ms: int | None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    size_bytes: int | None = None,
) -> DeadLetter:
    """A ``DeadLetter``. ``error``: the exception, its class, or an error kind ("validation",
    "lateness", ...); the source position (topic, partition, offset) where there is one."""
    if isinstance(error, BaseException):
        error = type(error)
    error_type = error if isinstance(error, str) else getattr(error, "__name__", str(error))
    return DeadLetter(
        stage=stage,
        reason=reason,
        error_type=error_type,
        message=str(message)[:MAX_DEAD_LETTER_MESSAGE_CHARS],
        topic=topic,
        partition=partition,
        offset=offset,
        call_id=call_id,
        event_time_ms=event_time_ms,
        payload_size_bytes=size_bytes,
    )


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
    metrics: CallMetrics | None = None  # QA metrics from the transcripts (None without ASR)
    scorecard: ScorecardResult | None = None  # None without ASR or without a scorecard


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
    speech_dbfs: float | None = None  # RMS level of the utterance's audio (None: silent)
    sentiment: float | None = None  # -1..1, set by AnalyzeTranscripts
    pii_redactions: int = 0  # spans AnalyzeTranscripts replaced in ``text`` (and n-best)


class SegmentationDone(NamedTuple):
    """``SegmentSpeech`` finished a (call, channel) stretch: the utterances it emitted, by start.

    Emitted when a channel is flushed (end of call, or the watermark passing its flush gap).
    The per-call aggregation knows a channel's transcripts are complete when every announced
    utterance has its transcript (or ASR failure). Announcing starts, not a count, keeps that
    right when a runner delivers a marker twice or re-fires a flush over the same utterances
    (Prism 2.77 under load did both)."""

    call_id: str
    channel: str
    starts_ms: tuple[int, ...]  # start_ms of each utterance emitted for this stretch
    end_ms: int  # event time just after the channel's last flushed audio

    @property
    def utterances(self) -> int:
        return len(self.starts_ms)


class SegmentBuffer(NamedTuple):
    """What ``SegmentSpeech`` keeps of one (call, channel) besides its audio: its state cell
    (``transforms.core.segmentation.step`` reads and returns it)."""

    call_id: str
    channel: str
    start_ms: int  # event time of sample 0 of the buffered audio
    end_ms: int  # event time just after the latest buffered chunk
    vad_at_ms: int  # end_ms when the VAD last ran
    language_hint: str | None
    emitted: tuple[int, ...] = ()  # start_ms of the utterances emitted so far
    marker_ms: int | None = None  # end of the call's end-of-call marker, once it was seen
    lost_to_ms: int = 0  # the watermark passed here: a hole before it is a lost chunk
    hole_ms: int | None = None  # end of the first hole the last cut stopped at


class BufferedAudio(NamedTuple):
    """A stretch of one channel's audio that ``SegmentSpeech`` holds until it is cut: its state
    bag's element (a chunk as it came, or what a cut left of a run of chunks)."""

    event_ms: int  # event time of the first sample
    samples: bytes  # 16 kHz float32


class SentimentQuarters(NamedTuple):
    """Mean sentiment (-1..1) of the turns whose midpoint falls in each quarter of the call."""

    q1: float | None
    q2: float | None
    q3: float | None
    q4: float | None


class CallMetrics(NamedTuple):
    """QA metrics of one call, computed by ``transforms.core.qa_metrics.call_metrics`` from its
    transcripts (pure function: the streaming job, the batch job and tests share it).

    Speech spans are the VAD's utterances trimmed by its padding. "Non-talk" is a gap in which
    nobody speaks, between the first and the last speech of the call. Overtalk is agent and
    customer speaking at once; the one who started later interrupted the other."""

    duration_s: float
    agent_talk_s: float
    customer_talk_s: float
    mixed_talk_s: float  # mono recordings: speech of both parties on one channel
    agent_talk_ratio: float | None  # agent / (agent + customer); None without two-party talk
    non_talk_s: float  # total of the gaps >= the non-talk threshold
    non_talk_count: int
    longest_non_talk_s: float
    overtalk_count: int  # overlaps >= the overtalk threshold
    overtalk_ms: int
    interruptions_by_agent: int
    interruptions_by_customer: int
    agent_words_per_min: float | None  # English (Latin-script) words per minute of talk
    customer_words_per_min: float | None
    agent_chars_per_min: float | None  # Chinese (Han) characters per minute of talk
    customer_chars_per_min: float | None
    agent_loudness_dbfs: float | None  # energy mean over the role's speech
    customer_loudness_dbfs: float | None
    turn_count: int  # runs of consecutive utterances by one role
    utterance_count: int
    keywords: tuple[str, ...]  # top terms of the call, most salient first
    sentiment: float | None  # -1..1, duration-weighted over all turns
    agent_sentiment: float | None
    customer_sentiment: float | None
    sentiment_quarters: SentimentQuarters  # all roles
    customer_sentiment_quarters: SentimentQuarters
    sentiment_trajectory: float | None  # customer's last quarter − first quarter
    zh_share: float | None  # share of utterances by language class
    en_share: float | None
    zh_en_share: float | None  # code-switched
    mean_confidence: float | None  # ASR mean log-probability over utterances
    min_confidence: float | None
    pii_redactions: int  # spans replaced in the call's transcripts
    transcripts_complete: bool  # every segmented utterance was transcribed (or failed)
    transcript_failures: int  # utterances ASR could not transcribe (dead-lettered)
    agent_sentiment_quarters: SentimentQuarters = SentimentQuarters(None, None, None, None)


class ScorecardAnswer(NamedTuple):
    """One scorecard question answered for one call."""

    question_id: str
    # the rule held (after ``negate``); None: not applicable to this call (its ``applies_if``
    # did not hold), so it counts neither way: SQL's avg(passed) skips it
    passed: bool | None
    points: float  # weight if passed, else 0
    potential: float  # the question's weight; 0 when not applicable
    evidence: str  # what decided it: the matched phrase, or the measured value
    evidence_ms: int | None  # event time of the matched turn, when a turn decided it


class ScorecardResult(NamedTuple):
    """A call's score on one scorecard (``transforms.core.scorecard.score_call``)."""

    scorecard: str  # the scorecard's name
    score: float  # sum of points
    potential: float  # sum of weights
    normalized_score: float  # score / potential (0..1); 0 when potential is 0
    answers: tuple[ScorecardAnswer, ...]


class ScorecardAnswerRow(NamedTuple):
    """One row of the ``scorecard_answers`` table: a question answered for a final call row.

    Key: (call_id, version, question_id); join to ``calls`` on (call_id, version)."""

    call_id: str
    version: int
    call_start_ms: int  # the call's start (partitions the table like ``calls``)
    scorecard: str
    question_id: str
    passed: bool | None  # None: not applicable to this call
    points: float
    potential: float
    evidence: str
    evidence_ms: int | None


class QuarantinedRow(NamedTuple):
    """A row held back by its table's expectation suite (``schemas.expectations``): one row of
    the ``quarantine`` table. Key: (table, row_key)."""

    table: str
    row_key: str  # the row's identity in its table (its Parquet file name there)
    failed_expectations: tuple[str, ...]  # expectation ids, sorted
    suite_version: str  # ``schemas.expectations.SUITE_VERSION`` that held it back
    row_json: str  # the whole row, nested records as objects (non-finite floats as strings)
    call_id: str | None
    event_time_ms: int | None


class QuarantineWithAck(NamedTuple):
    """A quarantined row plus the source offsets to acknowledge once it is durable (the acks
    the row would have carried to its own table's sink)."""

    row: QuarantinedRow
    acks: tuple[OffsetAck, ...] = ()


class RecordingTask(NamedTuple):
    """One file of a run: its index in the run (the partition in lineage columns), path and call id
    (the stem); ``duplicate_of``: the earlier file of the run with the same call id."""

    file_index: int
    path: str
    call_id: str
    duplicate_of: str | None = None
