"""The acoustic conditions of the evaluation corpus, as pure functions of the clean audio:
additive white noise and babble at a signal-to-noise ratio, and a telephone channel.

SNRs are relative to the speech's power (samples above a silence floor), so a call's silences
do not make its noise quieter. Every random draw comes from a seed, so a build is repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

TELEPHONY_RATE_HZ: Final = 8000
TELEPHONY_BAND_HZ: Final = (300.0, 3400.0)
_SILENCE_FLOOR: Final = 1e-3
_BABBLE_TALKERS: Final = 6


def speech_power(samples: np.ndarray) -> float:
    active = samples[np.abs(samples) > _SILENCE_FLOOR]
    return float(np.mean(active**2)) if len(active) else 0.0


def mix_at_snr(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``samples`` plus ``noise`` scaled to ``snr_db`` below the speech, clipped to [-1, 1]."""
    noise_power = float(np.mean(noise**2))
    if noise_power == 0 or speech_power(samples) == 0:
        return samples.astype(np.float32)
    gain = np.sqrt(speech_power(samples) / (noise_power * 10 ** (snr_db / 10)))
    return np.clip(samples + gain * noise, -1.0, 1.0).astype(np.float32)


def white(samples: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(samples)).astype(np.float32)
    return mix_at_snr(samples, noise, snr_db)


def babble_noise(n: int, talkers: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """``n`` samples of babble: ``_BABBLE_TALKERS`` clips drawn from ``talkers``, each looped
    from a random offset, summed."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, np.float32)
    picks = rng.choice(len(talkers), size=min(_BABBLE_TALKERS, len(talkers)), replace=False)
    for i in picks:
        clip = talkers[int(i)]
        if not len(clip):
            continue
        reps = -(-(n + len(clip)) // len(clip))
        looped = np.tile(clip, reps)
        start = int(rng.integers(0, len(clip)))
        out += looped[start : start + n] / np.sqrt(max(speech_power(clip), 1e-9))
    return out


def babble(
    samples: np.ndarray, snr_db: float, talkers: Sequence[np.ndarray], seed: int
) -> np.ndarray:
    return mix_at_snr(samples, babble_noise(len(samples), talkers, seed), snr_db)


def telephone(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """The 300-3400 Hz band (4th-order Butterworth band-pass), resampled to 8 kHz. G.711
    mu-law coding is left to the WAV writer (``soundfile`` subtype ``ULAW``)."""
    from math import gcd

    from scipy.signal import butter, resample_poly, sosfiltfilt

    sos = butter(4, TELEPHONY_BAND_HZ, btype="bandpass", fs=rate_hz, output="sos")
    band = sosfiltfilt(sos, samples)
    g = gcd(rate_hz, TELEPHONY_RATE_HZ)
    narrow = resample_poly(band, TELEPHONY_RATE_HZ // g, rate_hz // g)
    return np.clip(narrow, -1.0, 1.0).astype(np.float32)
