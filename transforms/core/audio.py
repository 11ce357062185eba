"""Audio samples and payloads: G.711 (mu-law, A-law) both ways, 16-bit PCM, resampling. Pure
numpy, shared by the decoder, the producer's encoder, segmentation and ASR."""

from __future__ import annotations

from typing import Final

import numpy as np

from schemas import audio


def _mulaw_table() -> np.ndarray:
    # ITU-T G.711 mu-law expansion: invert, split sign/exponent/mantissa, add the bias back.
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype("<i2")


def _alaw_table() -> np.ndarray:
    # ITU-T G.711 A-law expansion: even bits are inverted on the wire (XOR 0x55).
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype("<i2")


_G711_TABLES: Final = {audio.CODEC_MULAW: _mulaw_table(), audio.CODEC_ALAW: _alaw_table()}


def to_pcm_s16le(payload: bytes, codec: str) -> bytes:
    """Payload in ``codec`` → 16-bit little-endian PCM bytes."""
    if codec == audio.CODEC_PCM_S16LE:
        return payload
    table = _G711_TABLES[codec]
    return bytes(table[np.frombuffer(payload, dtype=np.uint8)].tobytes())


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
