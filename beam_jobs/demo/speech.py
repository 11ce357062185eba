"""Synthesized speech for the demo, the ASR benchmarks and tests: espeak-ng voices, resampled
to 16 kHz by sox, offline.

English uses ``en-us``. Mandarin uses ``cmn-latn-pinyin`` fed with tone-numbered pinyin
(pypinyin): Debian 12's plain ``cmn`` voice reads tone digits as English numbers. That voice
reads Latin letters as pinyin, so code-switched text is split into Han and Latin runs and each
run is spoken by its own voice. A scripted call places each turn on its speaker's channel at
planned times, and keeps the reference text for scoring.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np

from transforms.core.script import HAN_RANGES, has_han
from transforms.io.recordings import CallAudio

RATE_HZ: Final = 16000
VOICES: Final = {"en": "en-us", "zh": "cmn-latn-pinyin"}
_CJK: Final = HAN_RANGES + "\u3000-\u303f\uff00-\uffef"  # Han + CJK punctuation
_RUNS: Final = re.compile(f"[{_CJK}]+|[^{_CJK}]+")


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is missing: deploy/local/setup.sh installs it (apt)")
    return path


def _espeak(text: str, voice: str, words_per_min: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw, wav = Path(tmp) / "raw.wav", Path(tmp) / "16k.wav"
        subprocess.run(
            [_require("espeak-ng"), "-v", voice, "-s", str(words_per_min), "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [_require("sox"), str(raw), "-r", str(RATE_HZ), "-c", "1", "-b", "16", str(wav)],
            check=True,
            capture_output=True,
        )
        import soundfile as sf

        samples, _ = sf.read(str(wav), dtype="float32")
    return np.asarray(samples, dtype=np.float32)


def pinyin(text: str) -> str:
    """Han text → tone-numbered pinyin for the ``cmn-latn-pinyin`` voice."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    return " ".join(s for s in syllables if s.strip() and not re.fullmatch(r"\W+", s))


def speak(text: str, language: str, words_per_min: int = 150) -> np.ndarray:
    """``text`` spoken at 16 kHz. ``language``: zh, zh-en (code-switched: Han runs in Mandarin,
    Latin runs in English), en, or any other espeak-ng voice (fr, de, ...)."""
    if language not in ("zh", "zh-en"):
        return _espeak(text, VOICES.get(language, language), words_per_min)
    parts = []
    gap = np.zeros(int(0.08 * RATE_HZ), np.float32)
    for run in _RUNS.findall(text):
        if has_han(run):
            parts.append(_espeak(pinyin(run), VOICES["zh"], words_per_min))
        elif re.search(r"[A-Za-z0-9]", run):
            parts.append(_espeak(run.strip(), VOICES["en"], words_per_min))
        else:
            continue
        parts.append(gap)
    if not parts:
        return np.zeros(0, np.float32)
    return np.concatenate(parts)


class Turn(NamedTuple):
    role: str  # agent | customer
    text: str
    pause_before_s: float = 0.6  # silence after the previous turn (negative: overtalk)


class SpokenTurn(NamedTuple):
    role: str
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ScriptedCall:
    audio: CallAudio
    language: str  # en | zh | zh-en
    turns: tuple[SpokenTurn, ...]

    def reference(self, role: str | None = None) -> str:
        """The script in time order (one role's or both)."""
        return " ".join(t.text for t in self.turns if role in (None, t.role))


def trim_silence(samples: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """``samples`` without the leading and trailing stretch quieter than ``threshold``."""
    loud = np.flatnonzero(np.abs(samples) >= threshold)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples[:0]


def scripted_call(
    call_id: str,
    language: str,
    turns: Sequence[Turn],
    lead_in_s: float = 0.5,
    tail_s: float = 1.0,
    language_hint: str | None = None,
    words_per_min: int = 150,
) -> ScriptedCall:
    """Two channels with each turn spoken on its speaker's channel at planned times."""
    # Planned times are speech times: espeak's lead-in and tail silence are cut off.
    clips = [trim_silence(speak(t.text, language, words_per_min)) for t in turns]
    spoken: list[SpokenTurn] = []
    t_s = lead_in_s
    for turn, clip in zip(turns, clips, strict=True):
        start = max(0.0, t_s + (turn.pause_before_s if spoken else 0.0))
        end = start + len(clip) / RATE_HZ
        spoken.append(SpokenTurn(turn.role, turn.text, start, end))
        t_s = end
    n = int((t_s + tail_s) * RATE_HZ)
    tracks = {"agent": np.zeros(n, np.float32), "customer": np.zeros(n, np.float32)}
    for s, clip in zip(spoken, clips, strict=True):
        i = int(s.start_s * RATE_HZ)
        tracks[s.role][i : i + len(clip)] += clip
    audio = CallAudio(call_id, RATE_HZ, tracks, language_hint=language_hint)
    return ScriptedCall(audio, language, tuple(spoken))
