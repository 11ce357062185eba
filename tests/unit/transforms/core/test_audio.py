"""``transforms/core/audio.py``: G.711 both ways against ITU values, and resampling."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import audio
from transforms.core.audio import encode, resample, to_pcm_s16le


def snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    noise = decoded - reference
    return float(10 * np.log10(np.sum(reference**2) / np.sum(noise**2)))


@pytest.mark.parametrize("codec", [audio.CODEC_MULAW, audio.CODEC_ALAW])
def test_g711_round_trip_snr(codec: str) -> None:
    t = np.arange(8000) / 8000
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    payload = encode(sine, codec)
    assert len(payload) == 8000
    decoded = np.frombuffer(to_pcm_s16le(payload, codec), dtype="<i2").astype(np.float64)
    reference = np.round(sine * 32767.0).astype(np.float64)
    assert snr_db(reference, decoded) > 30.0


@pytest.mark.parametrize(
    ("codec", "code", "linear"),
    [
        (audio.CODEC_MULAW, 0xFF, 0),
        (audio.CODEC_MULAW, 0x7F, 0),  # "negative zero"
        (audio.CODEC_MULAW, 0x00, -32124),
        (audio.CODEC_MULAW, 0x80, 32124),
        (audio.CODEC_MULAW, 0xFE, 8),
        (audio.CODEC_MULAW, 0x7E, -8),
        (audio.CODEC_ALAW, 0xD5, 8),
        (audio.CODEC_ALAW, 0x55, -8),
        (audio.CODEC_ALAW, 0xAA, 32256),
        (audio.CODEC_ALAW, 0x2A, -32256),
    ],
)
def test_g711_tables_match_itu_values(codec: str, code: int, linear: int) -> None:
    decoded = np.frombuffer(to_pcm_s16le(bytes([code]), codec), dtype="<i2")
    assert decoded.tolist() == [linear]


@pytest.mark.parametrize("codec", [audio.CODEC_MULAW, audio.CODEC_ALAW])
def test_g711_decode_then_encode_is_identity(codec: str) -> None:
    codes = bytes(range(256))
    linear = np.frombuffer(to_pcm_s16le(codes, codec), dtype="<i2")
    again = encode(linear.astype(np.float64) / 32767.0, codec)
    # mu-law has two zeros (0x7F and 0xFF); the encoder writes 0xFF
    expected = codes.replace(b"\x7f", b"\xff") if codec == audio.CODEC_MULAW else codes
    assert again == expected


def test_resample_keeps_duration_and_a_tone() -> None:
    t = np.arange(8000) / 8000
    tone = np.sin(2 * np.pi * 300 * t).astype(np.float32)
    up = resample(tone, 8000, 16000)
    assert len(up) == 16000 and up.dtype == np.float32
    assert np.allclose(up[::2], tone, atol=0.02)
    assert resample(tone, 8000, 8000) is tone
