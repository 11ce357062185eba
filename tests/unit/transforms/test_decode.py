"""``transforms/decode.py``: one test per dead-letter reason, a G.711 record, and the DoFn in a
small batch pipeline (outputs, dead letters and counters). The codecs themselves:
``tests/unit/transforms/core/test_audio.py``."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from schemas import audio
from schemas.records import DeadLetter, KafkaRecord
from transforms.decode import (
    DEAD_LETTER_TAG,
    DecodeAndValidate,
    DecodeAndValidateFn,
    InvalidChunk,
    parse_record,
)

CAPTURE_MS = 1_764_072_000_000
KAFKA_TS_MS = 1_764_072_000_250
SILENCE_100MS = b"\x00\x00" * 1600  # 100 ms of 16 kHz s16 mono

BASE_HEADERS: dict[str, bytes] = {
    "schema_version": b"1",
    "channel": b"agent",
    "seq": b"3",
    "codec": b"pcm_s16le",
    "sample_rate_hz": b"16000",
    "channels": b"1",
    "capture_time_ms": str(CAPTURE_MS).encode(),
    "end_of_call": b"false",
}


def record(
    key: bytes | None = b"c-1",
    value: bytes | None = SILENCE_100MS,
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[str, bytes], ...] = (),
    offset: int = 7,
    **headers: bytes,
) -> KafkaRecord:
    merged = {**BASE_HEADERS, **headers}
    pairs = tuple((k, v) for k, v in merged.items() if k not in drop) + extra
    return KafkaRecord("audio", 1, offset, key, value, pairs, KAFKA_TS_MS)


def reason_of(rec: KafkaRecord) -> str:
    with pytest.raises(InvalidChunk) as info:
        parse_record(rec)
    return info.value.reason


# --- one test per dead-letter reason ---------------------------------------------------------


@pytest.mark.parametrize("key", [None, b""])
def test_missing_key(key: bytes | None) -> None:
    assert reason_of(record(key=key)) == "missing_key"


@pytest.mark.parametrize(
    "key",
    [
        b"\xff\xfe",  # not UTF-8
        b"c" * 129,  # longer than 128 bytes
        ("\u4e2d" * 43).encode(),  # 43 characters but 129 bytes: the limit is in bytes
        b"c-1\n",  # not printable
        b"c\x00",
    ],
)
def test_bad_key(key: bytes) -> None:
    assert reason_of(record(key=key)) == "bad_key"


def test_longest_key_is_accepted() -> None:
    assert parse_record(record(key=b"c" * 128)).call_id == "c" * 128
    assert parse_record(record(key="\u4e2d".encode() * 42)).call_id == "\u4e2d" * 42


def test_bad_header_not_utf8() -> None:
    assert reason_of(record(tenant=b"\xc3\x28")) == "bad_header"


def test_bad_header_duplicate() -> None:
    assert reason_of(record(extra=(("seq", b"4"),))) == "bad_header"


@pytest.mark.parametrize(
    "name", ["schema_version", "channel", "seq", "codec", "sample_rate_hz", "channels"]
)
def test_missing_header(name: str) -> None:
    with pytest.raises(InvalidChunk) as info:
        parse_record(record(drop=(name,)))
    assert info.value.reason == "missing_header"
    assert str(info.value) == f"required header(s) missing: {name}"


def test_missing_headers_are_all_named() -> None:
    with pytest.raises(InvalidChunk, match="missing: seq, codec$"):
        parse_record(record(drop=("seq", "codec")))


@pytest.mark.parametrize("version", [b"2", b"0", b"1.0", b""])
def test_unsupported_schema_version(version: bytes) -> None:
    assert reason_of(record(schema_version=version)) == "unsupported_schema_version"


def test_call_id_mismatch() -> None:
    assert reason_of(record(call_id=b"c-2")) == "call_id_mismatch"
    assert parse_record(record(call_id=b"c-1")).call_id == "c-1"


@pytest.mark.parametrize("channel", [b"Agent", b"left", b""])
def test_bad_channel(channel: bytes) -> None:
    assert reason_of(record(channel=channel)) == "bad_channel"


@pytest.mark.parametrize("seq", [b"-1", b"x", b"1000000000", b"1.5", b""])
def test_bad_seq(seq: bytes) -> None:
    assert reason_of(record(seq=seq)) == "bad_seq"


@pytest.mark.parametrize(
    "seq",
    [b"+5", b" 5", b"1_0", "\u0663".encode()],
    ids=["plus", "space", "underscore", "arabic-indic-digit"],
)
def test_seq_outside_the_contract_pattern_is_rejected(seq: bytes) -> None:
    assert reason_of(record(seq=seq)) == "bad_seq"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [("channels", b"01", "bad_channels"), ("sample_rate_hz", b"16_000", "bad_sample_rate")],
)
def test_integer_headers_outside_the_contract_are_rejected(
    name: str, value: bytes, reason: str
) -> None:
    assert reason_of(record(**{name: value})) == reason


def test_empty_end_of_call_header_is_rejected() -> None:
    assert reason_of(record(end_of_call=b"")) == "bad_end_of_call"


@pytest.mark.parametrize("codec", [b"opus", b"PCM_S16LE", b"pcm_s16be"])
def test_unknown_codec(codec: bytes) -> None:
    assert reason_of(record(codec=codec)) == "unknown_codec"


@pytest.mark.parametrize(
    ("codec", "rate"),
    [
        (b"pcm_s16le", b"11025"),
        (b"pcm_s16le", b"0"),
        (b"pcm_s16le", b"abc"),
        (b"pcm_s16le", b"1000000"),
        (b"pcm_mulaw", b"16000"),  # G.711 is 8 kHz only
        (b"pcm_alaw", b"16000"),
    ],
)
def test_bad_sample_rate(codec: bytes, rate: bytes) -> None:
    assert reason_of(record(codec=codec, sample_rate_hz=rate)) == "bad_sample_rate"


@pytest.mark.parametrize("rate", audio.PCM_SAMPLE_RATES_HZ)
def test_every_listed_pcm_rate_is_accepted(rate: int) -> None:
    chunk = parse_record(record(sample_rate_hz=str(rate).encode()))
    assert (chunk.sample_rate_hz, chunk.num_samples) == (rate, 1600)


@pytest.mark.parametrize(
    ("channel", "channels"),
    [(b"agent", b"2"), (b"customer", b"2"), (b"mixed", b"3"), (b"agent", b"0"), (b"agent", b"x")],
)
def test_bad_channels(channel: bytes, channels: bytes) -> None:
    assert reason_of(record(channel=channel, channels=channels)) == "bad_channels"


@pytest.mark.parametrize(
    "capture",
    [
        b"1764072000",  # seconds, not milliseconds
        b"946684799999",  # just before 2000-01-01
        b"4102444800000",  # 2100-01-01
        b"-1",
        b"soon",
    ],
)
def test_bad_capture_time(capture: bytes) -> None:
    assert reason_of(record(capture_time_ms=capture)) == "bad_capture_time"


def test_capture_time_bounds_are_inclusive_below() -> None:
    assert parse_record(record(capture_time_ms=b"946684800000")).event_time_ms == 946684800000


@pytest.mark.parametrize("eoc", [b"True", b"1", b"yes"])
def test_bad_end_of_call(eoc: bytes) -> None:
    assert reason_of(record(end_of_call=eoc)) == "bad_end_of_call"


@pytest.mark.parametrize("hint", [b"fr", b"ZH", b"zh_en", b""])
def test_bad_language_hint(hint: bytes) -> None:
    assert reason_of(record(language_hint=hint)) == "bad_language_hint"


@pytest.mark.parametrize("value", [None, b""])
def test_empty_payload(value: bytes | None) -> None:
    assert reason_of(record(value=value)) == "empty_payload"


@pytest.mark.parametrize(
    ("headers", "size"),
    [
        ({}, 3),  # s16 mono: 2-byte frames
        ({"channel": b"mixed", "channels": b"2"}, 6),  # s16 stereo: 4-byte frames
    ],
)
def test_truncated_pcm(headers: dict[str, bytes], size: int) -> None:
    assert reason_of(record(value=b"\x01" * size, **headers)) == "truncated_pcm"


def test_chunk_too_long() -> None:
    ten_s = b"\x00\x00" * 16000 * 10
    assert parse_record(record(value=ten_s)).num_samples == 160_000  # exactly 10 s: fine
    assert reason_of(record(value=ten_s + b"\x00\x00")) == "chunk_too_long"
    g711 = {"codec": b"pcm_alaw", "sample_rate_hz": b"8000"}
    assert reason_of(record(value=b"\xd5" * 80_001, **g711)) == "chunk_too_long"


# --- accepted edge cases ---------------------------------------------------------------------


def test_end_of_call_marker_with_empty_payload_is_accepted() -> None:
    chunk = parse_record(record(value=b"", end_of_call=b"true"))
    assert chunk.end_of_call is True
    assert (chunk.num_samples, chunk.pcm, chunk.duration_ms) == (0, b"", 0.0)


def test_missing_end_of_call_means_false() -> None:
    assert parse_record(record(drop=("end_of_call",))).end_of_call is False


def test_missing_capture_time_uses_the_kafka_timestamp() -> None:
    chunk = parse_record(record(drop=("capture_time_ms",)))
    assert chunk.event_time_ms == KAFKA_TS_MS
    assert chunk.event_time_source == "kafka_create_time"


def test_unknown_headers_are_ignored() -> None:
    chunk = parse_record(record(extra=(("x-trace-id", b"\xff"),)))
    assert chunk.seq == 3


def test_g711_record_decodes_to_s16() -> None:
    payload = bytes([0xD5, 0x55, 0xAA])
    chunk = parse_record(record(value=payload, codec=b"pcm_alaw", sample_rate_hz=b"8000"))
    assert chunk.num_samples == 3
    assert np.frombuffer(chunk.pcm, dtype="<i2").tolist() == [8, -8, 32256]


# --- the DoFn in a pipeline ------------------------------------------------------------------


def test_decode_pipeline_outputs_dead_letters_and_counters() -> None:
    good = record(offset=1)
    eoc = record(offset=2, value=b"", end_of_call=b"true", seq=b"4")
    bad_codec = record(offset=3, codec=b"opus")
    bad_key = record(offset=4, key=b"\xff")
    p = beam.Pipeline(runner=FnApiRunner())  # in-process; never the download-prone default
    out = p | beam.Create([good, eoc, bad_codec, bad_key]) | DecodeAndValidate()

    class WithTimestamp(beam.DoFn):
        def process(self, chunk: Any, ts: Any = beam.DoFn.TimestampParam) -> Any:
            yield (chunk.offset, chunk.seq, chunk.end_of_call, ts.micros // 1000)

    assert_that(
        out.chunks | beam.ParDo(WithTimestamp()),
        equal_to([(1, 3, False, CAPTURE_MS), (2, 4, True, CAPTURE_MS)]),
        label="chunks",
    )
    assert_that(
        out[DEAD_LETTER_TAG],
        equal_to(
            [
                DeadLetter(
                    stage="decode",
                    reason="unknown_codec",
                    error_type="validation",
                    message="codec 'opus' is not one of ('pcm_s16le', 'pcm_mulaw', 'pcm_alaw')",
                    topic="audio",
                    partition=1,
                    offset=3,
                    call_id="c-1",
                    event_time_ms=KAFKA_TS_MS,
                    payload_size_bytes=3200,
                ),
                DeadLetter(
                    stage="decode",
                    reason="bad_key",
                    error_type="validation",
                    message="the Kafka key (call id) is not UTF-8",
                    topic="audio",
                    partition=1,
                    offset=4,
                    call_id="\ufffd",
                    event_time_ms=KAFKA_TS_MS,
                    payload_size_bytes=3200,
                ),
            ]
        ),
        label="dead_letters",
    )
    result = p.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_namespace("callqa.decode"))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    assert counters == {
        "chunks_in": 4,
        "chunks_valid": 2,
        "chunks_dead_lettered": 2,
        "dead_letter_unknown_codec": 1,
        "dead_letter_bad_key": 1,
    }


def test_decoder_bug_becomes_a_decode_error_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(rec: KafkaRecord) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("transforms.decode.parse_record", broken)
    out = list(DecodeAndValidateFn().process(record(offset=9)))
    assert len(out) == 1
    assert out[0].tag == DEAD_LETTER_TAG
    dl = out[0].value
    assert (dl.reason, dl.error_type, dl.message, dl.offset) == (
        "decode_error",
        "ZeroDivisionError",
        "boom",
        9,
    )


def test_a_bundles_chunks_go_on_as_one_run_per_call_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``GroupChunksFn``: a bundle's chunks per (call, channel), in arrival order, stamped with
    the earliest; a run is handed over early once it holds ``MAX_RUN_CHUNKS``."""
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import Timestamp

    import transforms.decode as decode
    from schemas.records import ChunkRun

    def a_chunk(call: str, channel: str, at_ms: int) -> Any:
        rec = record(call.encode(), capture_time_ms=str(CAPTURE_MS + at_ms).encode())
        return parse_record(rec)._replace(channel=channel)

    arrivals = [("c1", "agent", 200), ("c2", "agent", 0), ("c1", "customer", 0),
                ("c1", "agent", 100), ("c1", "agent", 300), ("c2", "agent", 100)]  # fmt: skip
    fn = decode.GroupChunksFn()
    fn.start_bundle()
    outs = []
    for call, channel, at in arrivals:
        c = a_chunk(call, channel, at)
        outs += list(fn.process(c, Timestamp(micros=c.event_time_ms * 1000), GlobalWindow()))
    outs += list(fn.finish_bundle())
    runs = {(o.value.chunks[0].call_id, o.value.chunks[0].channel): o for o in outs}
    assert len(outs) == 3 and all(isinstance(o.value, ChunkRun) for o in outs)
    c1 = runs[("c1", "agent")]
    assert [c.event_time_ms - CAPTURE_MS for c in c1.value.chunks] == [200, 100, 300]
    assert c1.timestamp == Timestamp(micros=(CAPTURE_MS + 100) * 1000)  # the earliest of the run
    assert c1.windows == (GlobalWindow(),)
    monkeypatch.setattr(decode, "MAX_RUN_CHUNKS", 2)
    fn.start_bundle()
    early = []
    for call, channel, at in arrivals:
        c = a_chunk(call, channel, at)
        early += [len(o.value.chunks) for o in fn.process(c, Timestamp(micros=0), GlobalWindow())]
    assert early == [2, 2] and [len(o.value.chunks) for o in fn.finish_bundle()] == [1, 1]
