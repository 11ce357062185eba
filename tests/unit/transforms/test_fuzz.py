"""Fuzzing with hypothesis: generated events through the decoder and the per-call lifecycle.

* **Decoder.** 10,000 generated Kafka records: random keys (empty, long, not UTF-8), every
  contract header kept, dropped, doubled or replaced by random bytes, random codecs, rates,
  channel counts, capture times and language hints, empty and oversized payloads. Each record
  comes out as exactly one thing: a chunk that satisfies the contract, or a dead letter whose
  reason is one of the documented decode reasons (never ``decode_error``: that is a decoder
  bug). Nothing raises.
* **Lifecycle.** A valid two-channel call whose chunks arrive in any order, with any chunks
  repeated (redelivery), yields the same final row as its chunks in order: the same seconds per
  channel, chunks, gaps, offsets and close reason, with the repeats counted.

``CALLQA_FUZZ_EXAMPLES`` scales the number of examples (CI runs the default)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import audio, events
from schemas.records import AudioChunk, DeadLetter, KafkaRecord
from tests.unit.transforms.core.test_lifecycle import WAITS, Key, Watermark, chunk
from transforms.decode import DecodeAndValidateFn

pytestmark = pytest.mark.slow  # about a minute on a busy 2-core machine

_SCALE = float(os.environ.get("CALLQA_FUZZ_EXAMPLES", "1"))
DECODER_EXAMPLES = int(10_000 * _SCALE)
LIFECYCLE_EXAMPLES = int(400 * _SCALE)

#: docs/operations.md, the decode stage's reasons, less ``decode_error`` (a decoder bug).
DECODE_REASONS = frozenset(
    ("missing_key", "bad_key", "bad_header", "missing_header", "unsupported_schema_version",
     "call_id_mismatch", "bad_channel", "bad_seq", "unknown_codec", "bad_sample_rate",
     "bad_channels", "bad_capture_time", "bad_end_of_call", "bad_language_hint",
     "empty_payload", "truncated_pcm", "chunk_too_long")
)  # fmt: skip

_VALID: dict[str, st.SearchStrategy[bytes]] = {
    events.H_SCHEMA_VERSION: st.sampled_from([b"1", b"2", b""]),
    events.H_CHANNEL: st.sampled_from([r.encode() for r in audio.ROLES] + [b"bot"]),
    events.H_SEQ: st.integers(-5, 2_000_000_000).map(lambda n: str(n).encode()),
    events.H_CODEC: st.sampled_from([c.encode() for c in audio.CODECS] + [b"opus"]),
    events.H_SAMPLE_RATE_HZ: st.sampled_from([8000, 16000, 44100, 0, 11025]).map(
        lambda n: str(n).encode()
    ),
    events.H_CHANNELS: st.sampled_from([b"1", b"2", b"3", b"0"]),
    events.H_CAPTURE_TIME_MS: st.integers(-1, 5_000_000_000_000).map(lambda n: str(n).encode()),
    events.H_END_OF_CALL: st.sampled_from([b"true", b"false", b"yes"]),
    events.H_CALL_ID: st.sampled_from([b"call-1", b"other"]),
    events.H_LANGUAGE_HINT: st.sampled_from([h.encode() for h in events.LANGUAGE_HINTS] + [b"fr"]),
    events.H_TENANT: st.binary(max_size=8),
}


@st.composite
def kafka_records(draw: Any) -> KafkaRecord:
    key = draw(
        st.one_of(
            st.just(b"call-1"),
            st.binary(max_size=140),
            st.text(max_size=140).map(lambda t: t.encode("utf-8", "surrogatepass")),
        )
    )
    headers: list[tuple[str, bytes]] = []
    for name, valid in _VALID.items():
        how = draw(st.sampled_from(["valid", "valid", "valid", "drop", "random", "twice"]))
        if how == "drop":
            continue
        value = draw(st.binary(max_size=12)) if how == "random" else draw(valid)
        headers.append((name, value))
        if how == "twice":
            headers.append((name, draw(valid)))
    if draw(st.booleans()):
        headers.append((draw(st.text(max_size=10)), draw(st.binary(max_size=10))))
    size = draw(st.one_of(st.integers(0, 4000), st.sampled_from([0, 1, 3, 1_000_001])))
    payload = bytes(size) if draw(st.booleans()) else draw(st.binary(min_size=size % 64))
    return KafkaRecord("audio", 0, 7, key, payload, tuple(headers), 1_764_072_000_000)


def _satisfies_contract(c: AudioChunk, rec: KafkaRecord) -> bool:
    return (
        c.call_id.encode() == rec.key
        and c.channel in audio.ROLES
        and c.codec in audio.CODECS
        and events.MIN_EVENT_MS <= c.event_time_ms < events.MAX_EVENT_MS
        and len(c.pcm) == 2 * c.num_samples * c.channels
        and 1000 * c.num_samples <= audio.MAX_CHUNK_MS * c.sample_rate_hz
        and (c.num_samples > 0 or c.end_of_call)
    )


@settings(
    max_examples=DECODER_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(rec=kafka_records())
def test_every_generated_record_is_a_valid_chunk_or_a_dead_letter_with_a_reason(
    rec: KafkaRecord,
) -> None:
    out = list(DecodeAndValidateFn().process(rec))
    assert len(out) == 1
    item = getattr(out[0], "value", out[0])
    if isinstance(item, DeadLetter):
        assert item.stage == "decode" and item.reason in DECODE_REASONS, item
        assert item.message and item.offset == 7
    else:
        assert isinstance(item, AudioChunk) and _satisfies_contract(item, rec), item


CHUNK_SAMPLES = st.integers(1, 3200)


@st.composite
def scrambled_calls(draw: Any) -> tuple[list[AudioChunk], list[AudioChunk]]:
    """A valid call (both channels, an end-of-call marker last) and the same chunks scrambled
    and partly repeated."""
    chunks = []
    for channel in ("agent", "customer"):
        n = draw(st.integers(1, 25))
        for seq in range(n):
            at_ms = seq * 100 + (0 if channel == "agent" else 37)
            chunks.append(chunk(seq, channel=channel, at_ms=at_ms, num_samples=draw(CHUNK_SAMPLES),
                                offset=len(chunks)))  # fmt: skip
    last = max(chunks, key=lambda c: c.event_time_ms)
    chunks[chunks.index(last)] = last._replace(end_of_call=True)
    repeats = draw(st.lists(st.sampled_from(chunks), max_size=10))
    scrambled = draw(st.permutations(chunks + repeats))
    return chunks, scrambled


@settings(max_examples=LIFECYCLE_EXAMPLES, deadline=None, derandomize=True)
@given(call=scrambled_calls())
def test_any_order_and_duplication_of_a_calls_chunks_gives_its_in_order_row(
    call: tuple[list[AudioChunk], list[AudioChunk]],
) -> None:
    in_order, scrambled = call
    past_expiry = Watermark(1_000_000)
    want = Key(WAITS).run([*in_order, past_expiry])
    got = Key(WAITS).run([*scrambled, past_expiry])
    # The final row, then the same row again with the call's offsets at expiry.
    assert len(want.rows) == len(got.rows) == 2
    repeats = len(scrambled) - len(in_order)
    for (expected, _), (row, _) in zip(want.rows, got.rows, strict=True):
        assert row.is_final and row.close_reason == "end_of_call" and row.version == 1
        assert row._replace(duplicate_chunks=0) == expected._replace(duplicate_chunks=0)
        assert row.duplicate_chunks == repeats and expected.duplicate_chunks == 0
        assert row.missing_seq_count == 0 and row.chunk_count == len(in_order)
    # every delivery is acknowledged at expiry, the repeats too
    assert got.rows[-1][1] == want.rows[-1][1] + repeats == len(scrambled)
