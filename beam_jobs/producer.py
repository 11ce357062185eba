"""Producer library: audio → contract-v1 chunk events → Kafka (``callqa produce``).

Many calls are interleaved in one stream, ordered by capture time (a k-way merge), and sent
either at real-time pace (each chunk when its capture time comes) or as fast as possible.
Stereo files are split into agent (left) and customer (right) channels.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas import audio
from schemas.events import AudioChunkEvent


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


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for a load generator; not for ASR quality)."""
    if from_hz == to_hz:
        return samples
    n = int(round(len(samples) * to_hz / from_hz))
    return np.interp(np.arange(n) * (from_hz / to_hz), np.arange(len(samples)), samples).astype(
        np.float32
    )


def encode(samples: np.ndarray, codec: str) -> bytes:
    """Float samples → payload bytes in ``codec``."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    if codec == audio.CODEC_PCM_S16LE:
        return pcm.tobytes()
    if codec == audio.CODEC_MULAW:
        return _mulaw_encode(pcm).tobytes()
    if codec == audio.CODEC_ALAW:
        return _alaw_encode(pcm).tobytes()
    raise ValueError(f"unknown codec {codec!r}")


def _mulaw_encode(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def _alaw_encode(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32767)
    exponent = np.clip(np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 7, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 4, mag >> (exponent + 3)) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


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


def send_events(
    producer: Any,
    topic: str,
    events: Iterable[AudioChunkEvent],
    realtime: bool = False,
    total: int | None = None,
    progress: bool = True,
    on_sent: Callable[[AudioChunkEvent], None] | None = None,
) -> int:
    """Send ``events`` with key = call id and contract-v1 headers; returns the number sent.

    ``realtime``: each event is sent when the wall clock reaches its capture time (events from
    the past go at once). Otherwise as fast as the broker takes them.
    """
    from tqdm import tqdm

    sent = 0
    bar = tqdm(total=total, unit="chunk", disable=not progress, desc=f"→ {topic}")
    for event in events:
        if realtime and event.capture_time_ms is not None:
            delay = event.capture_time_ms / 1000.0 - time.time()
            if delay > 0:
                time.sleep(delay)
        producer.send(
            topic, key=event.kafka_key(), value=event.audio, headers=event.kafka_headers()
        )
        sent += 1
        bar.update(1)
        if on_sent is not None:
            on_sent(event)
    producer.flush()
    bar.close()
    return sent


def new_producer(bootstrap_servers: str, **extra: Any) -> Any:
    from kafka import KafkaProducer

    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers.split(","),
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": 4 * 1024 * 1024,
    }
    settings.update(extra)
    return KafkaProducer(**settings)


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
