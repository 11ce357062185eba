"""The audio-chunk event contract, version 1 (Kafka key + headers + raw audio bytes).

One Kafka record = one chunk of one channel of one call:

* **key**: the call id (UTF-8). Keying by call keeps a call's chunks in one partition, in order.
* **value**: the raw audio payload, exactly as the codec header says (no envelope, no base64).
* **headers**: the metadata below, each value an ASCII/UTF-8 string.

The machine-readable form of this contract is ``audio_chunk.v1.schema.json`` beside this file.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

SCHEMA_VERSION: Final = "1"
#: Versions this build of the pipeline accepts.
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({"1"})

# Header names (the contract). Kept short so ``kcat -H name=value`` stays readable.
H_SCHEMA_VERSION: Final = "schema_version"
H_CALL_ID: Final = "call_id"
H_CHANNEL: Final = "channel"
H_SEQ: Final = "seq"
H_CODEC: Final = "codec"
H_SAMPLE_RATE_HZ: Final = "sample_rate_hz"
H_CHANNELS: Final = "channels"
H_CAPTURE_TIME_MS: Final = "capture_time_ms"
H_END_OF_CALL: Final = "end_of_call"
H_TENANT: Final = "tenant"
H_AGENT_ID: Final = "agent_id"
H_QUEUE: Final = "queue"
H_LANGUAGE_HINT: Final = "language_hint"

REQUIRED_HEADERS: Final = (
    H_SCHEMA_VERSION,
    H_CHANNEL,
    H_SEQ,
    H_CODEC,
    H_SAMPLE_RATE_HZ,
    H_CHANNELS,
)
OPTIONAL_HEADERS: Final = (
    H_CALL_ID,
    H_CAPTURE_TIME_MS,
    H_END_OF_CALL,
    H_TENANT,
    H_AGENT_ID,
    H_QUEUE,
    H_LANGUAGE_HINT,
)
KNOWN_HEADERS: Final = frozenset(REQUIRED_HEADERS + OPTIONAL_HEADERS)
#: Language hints a producer may send; anything else is rejected at validation.
LANGUAGE_HINTS: Final = ("zh", "en", "zh-en", "auto")
MAX_CALL_ID_BYTES: Final = 128
#: Integer header values: plain ASCII decimal, no sign, no leading zeros (int() would also
#: take "+5", " 5", "1_0" and non-ASCII digits).
DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,17}")
#: Event times outside [2000-01-01, 2100-01-01) are producer bugs (seconds vs ms vs µs).
MIN_EVENT_MS: Final = 946_684_800_000
MAX_EVENT_MS: Final = 4_102_444_800_000


def parse_capture_time_ms(raw: bytes | str | None) -> int | None:
    """A ``capture_time_ms`` header value as epoch ms, or None when it breaks the contract."""
    if raw is None:
        return None
    text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
    if not DECIMAL.fullmatch(text):
        return None
    value = int(text)
    return value if MIN_EVENT_MS <= value < MAX_EVENT_MS else None


class AudioChunkEvent(NamedTuple):
    """What a producer sends: the typed form of one audio-chunk record (contract v1).

    Example: ``AudioChunkEvent(call_id="c-0001", channel="agent", seq=0, codec="pcm_s16le",
    sample_rate_hz=16000, channels=1, capture_time_ms=1764072000000, end_of_call=False,
    audio=b"\\x00\\x00...")``.
    """

    call_id: str  # Kafka key; 1..128 bytes of UTF-8, unique per call
    channel: str  # "agent" | "customer" | "mixed"
    seq: int  # 0, 1, 2, ... per (call, channel); gaps and repeats are reported, not fatal
    codec: str  # "pcm_s16le" | "pcm_mulaw" | "pcm_alaw"
    sample_rate_hz: int  # 8000 for G.711; 8000..48000 for pcm_s16le
    channels: int  # interleaved channels in the payload: 1 (or 2 for a "mixed" stereo mix)
    capture_time_ms: int | None  # epoch ms of the first sample (event time); None: CreateTime
    end_of_call: bool  # true on the call's last record: the call is closed at once
    audio: bytes  # the raw payload
    tenant: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    language_hint: str | None = None  # "zh" | "en" | "zh-en" | "auto"

    def kafka_key(self) -> bytes:
        return self.call_id.encode("utf-8")

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Headers in the wire format of contract v1 (what ``kcat -H`` would send)."""
        pairs: list[tuple[str, str]] = [
            (H_SCHEMA_VERSION, SCHEMA_VERSION),
            (H_CHANNEL, self.channel),
            (H_SEQ, str(self.seq)),
            (H_CODEC, self.codec),
            (H_SAMPLE_RATE_HZ, str(self.sample_rate_hz)),
            (H_CHANNELS, str(self.channels)),
            (H_END_OF_CALL, "true" if self.end_of_call else "false"),
        ]
        if self.capture_time_ms is not None:
            pairs.append((H_CAPTURE_TIME_MS, str(self.capture_time_ms)))
        for name, value in (
            (H_TENANT, self.tenant),
            (H_AGENT_ID, self.agent_id),
            (H_QUEUE, self.queue),
            (H_LANGUAGE_HINT, self.language_hint),
        ):
            if value is not None:
                pairs.append((name, value))
        return [(k, v.encode("utf-8")) for k, v in pairs]
