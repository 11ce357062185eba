"""Contract v1: ``schemas/events.py`` and ``audio_chunk.v1.schema.json`` say the same thing, and
what a producer sends (``AudioChunkEvent``) is what the decoder reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from schemas import audio, events
from schemas.events import AudioChunkEvent
from schemas.records import KafkaRecord
from transforms.core.audio import to_pcm_s16le
from transforms.decode import parse_record

SCHEMA_PATH = Path(events.__file__).with_name("audio_chunk.v1.schema.json")
CAPTURE_MS = 1_764_072_000_000


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def header_props(schema: dict[str, Any]) -> dict[str, Any]:
    return schema["properties"]["headers"]["properties"]


def as_document(event: AudioChunkEvent) -> dict[str, Any]:
    """The record as the JSON schema describes it: {key, headers, value_bytes}."""
    return {
        "key": event.kafka_key().decode("utf-8"),
        "headers": {k: v.decode("utf-8") for k, v in event.kafka_headers()},
        "value_bytes": len(event.audio),
    }


def errors(validator: jsonschema.Draft202012Validator, doc: dict[str, Any]) -> list[str]:
    return sorted(e.message for e in validator.iter_errors(doc))


def event(codec: str = audio.CODEC_PCM_S16LE, **overrides: Any) -> AudioChunkEvent:
    rate = audio.PIPELINE_SAMPLE_RATE_HZ if codec == audio.CODEC_PCM_S16LE else 8000
    n = rate // 10  # 100 ms
    payload = bytes(range(256)) * (n * audio.BYTES_PER_SAMPLE[codec] // 256 + 1)
    fields: dict[str, Any] = {
        "call_id": "c-20261125-000123",
        "channel": audio.ROLE_AGENT,
        "seq": 17,
        "codec": codec,
        "sample_rate_hz": rate,
        "channels": 1,
        "capture_time_ms": CAPTURE_MS,
        "end_of_call": False,
        "audio": payload[: n * audio.BYTES_PER_SAMPLE[codec]],
        "tenant": "acme-cn",
        "agent_id": "a-0042",
        "queue": "billing",
        "language_hint": "zh-en",
    }
    fields.update(overrides)
    return AudioChunkEvent(**fields)


def to_record(ev: AudioChunkEvent, offset: int = 41) -> KafkaRecord:
    return KafkaRecord(
        topic="audio",
        partition=3,
        offset=offset,
        key=ev.kafka_key(),
        value=ev.audio,
        headers=tuple(ev.kafka_headers()),
        timestamp_ms=CAPTURE_MS + 5,
    )


# --- the JSON schema and the Python constants agree ------------------------------------------


def test_required_headers_match(schema: dict[str, Any]) -> None:
    assert schema["properties"]["headers"]["required"] == list(events.REQUIRED_HEADERS)


def test_known_headers_match(schema: dict[str, Any]) -> None:
    assert set(header_props(schema)) == events.KNOWN_HEADERS
    assert set(events.REQUIRED_HEADERS) | set(events.OPTIONAL_HEADERS) == events.KNOWN_HEADERS
    assert not set(events.REQUIRED_HEADERS) & set(events.OPTIONAL_HEADERS)


def test_codec_enum_matches(schema: dict[str, Any]) -> None:
    assert header_props(schema)["codec"]["enum"] == list(audio.CODECS)
    assert set(audio.BYTES_PER_SAMPLE) == set(audio.CODECS)


def test_channel_enum_matches(schema: dict[str, Any]) -> None:
    assert header_props(schema)["channel"]["enum"] == list(audio.ROLES)


def test_language_hint_enum_matches(schema: dict[str, Any]) -> None:
    assert header_props(schema)["language_hint"]["enum"] == list(events.LANGUAGE_HINTS)


def test_schema_version_const_matches(schema: dict[str, Any]) -> None:
    assert header_props(schema)["schema_version"]["const"] == events.SCHEMA_VERSION
    supported = events.SUPPORTED_SCHEMA_VERSIONS
    assert supported == {events.SCHEMA_VERSION}


def test_key_length_matches(schema: dict[str, Any]) -> None:
    assert schema["properties"]["key"]["maxLength"] == events.MAX_CALL_ID_BYTES


def test_sample_rates_in_description_match(schema: dict[str, Any]) -> None:
    text = header_props(schema)["sample_rate_hz"]["description"]
    listed = ", ".join(str(r) for r in audio.PCM_SAMPLE_RATES_HZ)
    assert f"{audio.G711_SAMPLE_RATE_HZ} for G.711" in text
    assert listed in text


# --- documents validate ----------------------------------------------------------------------


def test_schema_example_validates(
    schema: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    (example,) = schema["examples"]
    assert errors(validator, example) == []
    # by hand too: every required header present, every header known
    assert set(events.REQUIRED_HEADERS) <= set(example["headers"])
    assert set(example["headers"]) <= events.KNOWN_HEADERS


def test_header_examples_validate(
    schema: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    base = schema["examples"][0]
    for name, prop in header_props(schema).items():
        for value in prop["examples"]:
            doc = {**base, "headers": {**base["headers"], name: value}}
            assert errors(validator, doc) == [], (name, value)


@pytest.mark.parametrize("codec", audio.CODECS)
def test_kafka_headers_validate(validator: jsonschema.Draft202012Validator, codec: str) -> None:
    assert errors(validator, as_document(event(codec))) == []


def test_minimal_event_validates(validator: jsonschema.Draft202012Validator) -> None:
    ev = event(capture_time_ms=None, tenant=None, agent_id=None, queue=None, language_hint=None)
    doc = as_document(ev)
    assert set(doc["headers"]) == set(events.REQUIRED_HEADERS) | {events.H_END_OF_CALL}
    assert errors(validator, doc) == []


def test_schema_rejects_contract_violations(validator: jsonschema.Draft202012Validator) -> None:
    doc = as_document(event())
    bad_codec = {**doc, "headers": {**doc["headers"], "codec": "opus"}}
    no_seq = {**doc, "headers": {k: v for k, v in doc["headers"].items() if k != "seq"}}
    assert errors(validator, bad_codec) == [
        "'opus' is not one of ['pcm_s16le', 'pcm_mulaw', 'pcm_alaw']"
    ]
    assert errors(validator, no_seq) == ["'seq' is a required property"]


def test_schema_accepts_an_empty_end_of_call_marker(
    validator: jsonschema.Draft202012Validator,
) -> None:
    doc = as_document(event(end_of_call=True, audio=b""))
    assert errors(validator, doc) == []


# --- producer → Kafka record → decoder round trip -------------------------------------------


def test_kafka_headers_wire_format() -> None:
    ev = event(seq=7, end_of_call=True, tenant=None, queue=None)
    assert ev.kafka_key() == b"c-20261125-000123"
    assert ev.kafka_headers() == [
        ("schema_version", b"1"),
        ("channel", b"agent"),
        ("seq", b"7"),
        ("codec", b"pcm_s16le"),
        ("sample_rate_hz", b"16000"),
        ("channels", b"1"),
        ("end_of_call", b"true"),
        ("capture_time_ms", b"1764072000000"),
        ("agent_id", b"a-0042"),
        ("language_hint", b"zh-en"),
    ]


@pytest.mark.parametrize("codec", audio.CODECS)
def test_round_trip_through_parse_record(codec: str) -> None:
    ev = event(codec)
    chunk = parse_record(to_record(ev))
    n = len(ev.audio) // audio.BYTES_PER_SAMPLE[codec]
    assert chunk.call_id == ev.call_id
    assert chunk.channel == ev.channel
    assert chunk.seq == ev.seq
    assert chunk.codec == codec
    assert chunk.sample_rate_hz == ev.sample_rate_hz
    assert chunk.channels == 1
    assert chunk.event_time_ms == CAPTURE_MS
    assert chunk.event_time_source == "capture_time"
    assert chunk.num_samples == n
    assert chunk.duration_ms == 100.0
    assert chunk.end_of_call is False
    assert (chunk.tenant, chunk.agent_id, chunk.queue, chunk.language_hint) == (
        "acme-cn",
        "a-0042",
        "billing",
        "zh-en",
    )
    assert (chunk.topic, chunk.partition, chunk.offset) == ("audio", 3, 41)
    assert len(chunk.pcm) == 2 * n
    assert chunk.pcm == to_pcm_s16le(ev.audio, codec)
    if codec == audio.CODEC_PCM_S16LE:
        assert chunk.pcm == ev.audio


def test_round_trip_without_optional_fields() -> None:
    ev = event(capture_time_ms=None, tenant=None, agent_id=None, queue=None, language_hint=None)
    chunk = parse_record(to_record(ev))
    assert chunk.event_time_ms == CAPTURE_MS + 5  # the Kafka timestamp
    assert chunk.event_time_source == "kafka_create_time"
    assert (chunk.tenant, chunk.agent_id, chunk.queue, chunk.language_hint) == (None,) * 4


def test_round_trip_stereo_mix() -> None:
    pcm = np.arange(-800, 800, dtype="<i2").tobytes()  # 1600 samples = 800 stereo frames
    ev = event(channel=audio.ROLE_MIXED, channels=2, audio=pcm)
    chunk = parse_record(to_record(ev))
    assert (chunk.channel, chunk.channels, chunk.num_samples) == ("mixed", 2, 800)
    assert chunk.duration_ms == 50.0
