"""ASR options: model-directory detection (incl. the Qwen3-ASR layout check), every knob
honoured or refused per backend, language classes, length buckets, batch queues (no model
loaded)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from beam_jobs.config import domain_terms
from schemas.records import Utterance
from transforms.asr.hf import TransformersAsrModelHandler
from transforms.asr.options import (
    AsrOptions,
    ModelKind,
    ModelLayoutError,
    detect_model,
    forced_language,
    make_transcript,
    similar_length_groups,
    validate_options,
    whisper_prompt,
)
from transforms.asr.whisper import FasterWhisperModelHandler

CT2 = ModelKind("faster-whisper", "whisper")
QWEN = ModelKind("transformers", "qwen3_asr")
HF_WHISPER = ModelKind("transformers", "whisper")


def _hf_dir(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_ctranslate2_directory_is_faster_whisper(tmp_path: Path) -> None:
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    assert detect_model(tmp_path) == CT2
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ModelLayoutError, match="no tokenizer.json"):
        detect_model(tmp_path)


def test_hf_directories_are_transformers(tmp_path: Path) -> None:
    assert detect_model(_hf_dir(tmp_path, {"model_type": "qwen3_asr"})) == QWEN
    assert detect_model(_hf_dir(tmp_path, {"model_type": "whisper"})) == HF_WHISPER


def test_original_qwen3_asr_layout_is_refused(tmp_path: Path) -> None:
    # The original checkpoint loads in transformers without an error, with random weights.
    d = _hf_dir(tmp_path, {"model_type": "qwen3_asr", "thinker_config": {"audio_config": {}}})
    with pytest.raises(ModelLayoutError, match="original layout.*random weights.*-hf"):
        detect_model(d)


def test_other_directories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLayoutError, match="does not exist"):
        detect_model(tmp_path / "nope")
    with pytest.raises(ModelLayoutError, match="neither"):
        detect_model(tmp_path)
    with pytest.raises(ModelLayoutError, match="'bert' is not an ASR model"):
        detect_model(_hf_dir(tmp_path, {"model_type": "bert"}))


@pytest.mark.parametrize(
    ("kind", "knobs", "error"),
    [
        (CT2, {"max_alternatives": 2, "enable_word_timestamps": True}, "cannot be combined"),
        (CT2, {"large_model": True}, "CTranslate2"),
        (CT2, {"model_precision": "bf16"}, "not one the faster-whisper backend takes"),
        (QWEN, {"enable_word_timestamps": True}, "faster-whisper backend only"),
        (QWEN, {"model_precision": "int8"}, "not one the transformers backend takes"),
        (QWEN, {"cpu_threads": 2}, "torch uses its own pool"),
        (QWEN, {"backend": "faster-whisper"}, "is a transformers model"),
        (HF_WHISPER, {"language": "klingon"}, "not a Whisper language code"),
    ],
)
def test_unsupported_knobs_are_refused_with_a_reason(
    kind: ModelKind, knobs: dict, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        validate_options(AsrOptions(model_dir="m", **knobs), kind)


@pytest.mark.parametrize(
    ("kind", "knobs"),
    [
        (CT2, {"enable_word_timestamps": True, "temperature": 0.4, "beam_size": 1}),
        (CT2, {"model_precision": "float32", "language": "zh", "domain_terms": ("refund",)}),
        (QWEN, {"max_alternatives": 3, "beam_size": 4, "model_precision": "bf16"}),
        (QWEN, {"large_model": True, "model_copies": 2, "language": "yue"}),
        (HF_WHISPER, {"language": "en", "temperature": 0.2}),
    ],
)
def test_supported_knobs_pass(kind: ModelKind, knobs: dict) -> None:
    validate_options(AsrOptions(model_dir="m", **knobs), kind)


def test_inconsistent_knobs_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="needs beam_size >= it"):
        AsrOptions(model_dir="m", max_alternatives=4, beam_size=2)
    with pytest.raises(ValueError, match="needs large_model"):
        AsrOptions(model_dir="m", model_copies=2)
    with pytest.raises(ValueError, match="device"):
        AsrOptions(model_dir="m", device="tpu")
    AsrOptions(model_dir="m", max_alternatives=4, beam_size=1, temperature=0.8)  # sampled


def test_language_hints_force_zh_and_en_only_when_auto() -> None:
    utt = Utterance("c", "agent", 0, 1, 16000, b"", "zh")
    assert forced_language(AsrOptions(model_dir="m"), utt) == "zh"
    assert forced_language(AsrOptions(model_dir="m"), utt._replace(language_hint="fr")) is None
    assert forced_language(AsrOptions(model_dir="m"), utt._replace(language_hint=None)) is None
    assert forced_language(AsrOptions(model_dir="m", language="en"), utt) == "en"


def test_mandarin_transcripts_come_out_in_the_chosen_script() -> None:
    utt = Utterance("c", "agent", 0, 1000, 16000, b"\x00\x01" * 160, "zh")

    def written(script: str, language: str = "zh") -> tuple[str, tuple[str, ...]]:
        opts = AsrOptions(model_dir="m", zh_script=script)
        t = make_transcript(utt, opts, "b", " 請稍等 OK ", language, -0.1, alternatives=("謝謝",))
        return t.text, t.alternatives

    assert AsrOptions(model_dir="m").zh_script == "simplified"
    assert written("simplified") == ("请稍等 OK", ("谢谢",))
    assert written("traditional") == ("請稍等 OK", ("謝謝",))
    assert written("as_is") == ("請稍等 OK", ("謝謝",))
    assert written("simplified", "ja") == ("請稍等 OK", ("謝謝",))  # Japanese kanji stay
    with pytest.raises(ValueError, match="zh_script"):
        AsrOptions(model_dir="m", zh_script="pinyin")


def test_length_buckets_keep_padding_small() -> None:
    lengths = [16000, 80000, 17000, 160000, 20000, 90000]
    buckets = similar_length_groups(lengths, max_ratio=1.5, max_size=8)
    assert buckets == [[0, 2, 4], [1, 5], [3]]
    assert similar_length_groups(lengths, max_ratio=100, max_size=2) == [[0, 2], [4, 1], [5, 3]]
    for b in buckets:
        assert max(lengths[i] for i in b) <= 1.5 * min(lengths[i] for i in b)


def test_domain_terms_from_list_or_file(tmp_path: Path) -> None:
    assert domain_terms("") == ()
    assert domain_terms(" refund, 退款 ,,VIP ") == ("refund", "退款", "VIP")
    f = tmp_path / "terms.txt"
    f.write_text("# products\nGold Card\n信用卡  # credit card\n\n")
    assert domain_terms(f"@{f}") == ("Gold Card", "信用卡")
    with pytest.raises(ValueError, match="cannot read"):
        domain_terms(f"@{tmp_path / 'missing.txt'}")


def test_min_window_is_within_whispers_window() -> None:
    with pytest.raises(ValueError, match="min_window_s"):
        AsrOptions(model_dir="m", min_window_s=45)


def test_batch_queues_per_backend_unless_length_buckets_are_given() -> None:
    within_bundle = AsrOptions(model_dir="m")
    # Within a bundle, a batch takes up to 8 of what queued: no ramp from 1 (BatchElements'
    # adaptive size) while utterances wait behind a batch of one.
    assert FasterWhisperModelHandler(within_bundle).batch_elements_kwargs() == {
        "min_batch_size": 8,
        "max_batch_size": 8,
    }
    waiting = AsrOptions(model_dir="m", max_batch_duration_s=1.0, max_batch_size=4)
    whisper = FasterWhisperModelHandler(waiting).batch_elements_kwargs()
    hf = TransformersAsrModelHandler(waiting, "qwen3_asr").batch_elements_kwargs()
    assert whisper["bucket_boundaries"] == [9.0, 14.0, 20.0]
    assert hf["bucket_boundaries"] == [4.0, 9.0, 16.0]
    assert whisper["min_batch_size"] == whisper["max_batch_size"] == 4
    assert whisper["max_batch_duration_secs"] == 1.0
    given = AsrOptions(model_dir="m", max_batch_duration_s=1.0, length_buckets_s=(3.0, 7.0))
    handlers = (FasterWhisperModelHandler(given), TransformersAsrModelHandler(given, "whisper"))
    for handler in handlers:
        assert handler.batch_elements_kwargs()["bucket_boundaries"] == [3.0, 7.0]


def test_queues_on_cpu_are_one_per_cpu_each_decoding_on_its_share(tmp_path: Path) -> None:
    from transforms.asr.transcribe import resolve_queues
    from transforms.asr.whisper import available_cpus, decoders

    for name in ("model.bin", "config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    cpu = resolve_queues(AsrOptions(model_dir=str(tmp_path), device="cpu"))
    assert cpu.queues == available_cpus()
    assert decoders(cpu) == (cpu.queues, max(1, available_cpus() // cpu.queues))
    assert resolve_queues(AsrOptions(model_dir=str(tmp_path), device="cuda")).queues == 1
    chosen = AsrOptions(model_dir=str(tmp_path), queues=3, cpu_threads=2)
    assert resolve_queues(chosen) is chosen and decoders(chosen) == (3, 2)
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    _hf_dir(qwen, {"model_type": "qwen3_asr"})
    assert resolve_queues(AsrOptions(model_dir=str(qwen), device="cpu")).queues == 1
    with pytest.raises(ValueError, match="queues and cpu_threads must be >= 0"):
        AsrOptions(model_dir="m", queues=-1)


def test_whisper_prompt_primes_mandarin_only_when_asked_then_the_domain_terms() -> None:
    plain = AsrOptions(model_dir="m")
    assert whisper_prompt(plain, "zh") == "" and not plain.zh_prompt
    prompted = AsrOptions(model_dir="m", zh_prompt=True, domain_terms=("CloudPay", "eSIM"))
    assert whisper_prompt(prompted, "zh") == " 以下是普通话的句子。 CloudPay, eSIM"
    assert whisper_prompt(prompted, "en") == " CloudPay, eSIM"
    traditional = AsrOptions(model_dir="m", zh_prompt=True, zh_script="traditional")
    assert whisper_prompt(traditional, "zh") == " 以下是普通話的句子。"
    as_is = AsrOptions(model_dir="m", zh_prompt=True, zh_script="as_is")
    assert whisper_prompt(as_is, "zh") == ""
    unprompted = dataclasses.replace(prompted, domain_terms_prompt=False)
    assert whisper_prompt(unprompted, "zh") == " 以下是普通话的句子。"


def test_transcripts_are_corrected_against_the_domain_terms_unless_turned_off() -> None:
    utt = Utterance("c", "customer", 0, 1000, 16000, b"\x00\x01" * 160, "zh")
    terms = ("畅享套餐", "SmartHome Pro")

    def written(**kw: bool) -> tuple[str, tuple[str, ...]]:
        opts = AsrOptions(model_dir="m", domain_terms=terms, **kw)  # type: ignore[arg-type]
        t = make_transcript(utt, opts, "b", "我想办理長相套餐", "zh", -0.1,
                            alternatives=("Smartphone Pro 连不上",))  # fmt: skip
        return t.text, t.alternatives

    assert written() == ("我想办理畅享套餐", ("SmartHome Pro 连不上",))
    off = written(domain_terms_correction=False)
    assert off == ("我想办理长相套餐", ("Smartphone Pro 连不上",))
