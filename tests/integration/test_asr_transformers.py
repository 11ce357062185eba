"""The transformers ASR backend through RunInference with tiny random-weight Qwen3-ASR and
Whisper models built from configs (no hub): plumbing, batching across calls, n-best, language
forcing and identification, device/precision choice and the checkpoint checks.

Random weights make random text: these tests check what the stage does with the model, never
what the model hears. Accuracy is tested with the embedded real-weight model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that

from beam_jobs.services.models import install_embedded_whisper
from beam_jobs.services.random_models import build_random_qwen3_asr, build_random_whisper
from schemas.records import Transcript, Utterance
from transforms.asr.hf import TransformersAsrModelHandler, resolve_torch_device
from transforms.asr.options import AsrOptions, ModelLayoutError
from transforms.asr.transcribe import model_handler

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_qwen3_asr(tmp_path_factory.mktemp("tiny-qwen3-asr"))


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = install_embedded_whisper() / "tokenizer.json"
    return build_random_whisper(tmp_path_factory.mktemp("tiny-whisper"), tokenizer)


def utterances(n: int, seed: int = 0) -> list[Utterance]:
    """``n`` utterances of 0.5–6 s from different calls (noise is enough for plumbing)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        seconds = float(rng.uniform(0.5, 6.0))
        pcm = (rng.standard_normal(int(16000 * seconds)) * 2000).astype("<i2").tobytes()
        start = 1_000_000 + 10_000 * i
        hint = ("en", "zh", None)[i % 3]
        out.append(
            Utterance(f"call-{i}", ("agent", "customer")[i % 2], start,
                      start + int(seconds * 1000), 16000, pcm, hint)
        )  # fmt: skip
    return out


def run_stage(
    handler: TransformersAsrModelHandler, utts: list[Utterance], check: Callable[[list], None]
) -> dict:
    """Run RunInference on FnApiRunner; ``check`` asserts on the transcripts (on the worker);
    returns the stage's metrics."""
    p = beam.Pipeline(runner=FnApiRunner())
    assert_that(p | beam.Create(utts) | RunInference(handler), check)
    result = p.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter().with_namespace("callqa.asr"))
    by_name = {m.key.metric.name: m.committed for m in metrics["counters"]}
    by_name.update({m.key.metric.name: m.committed for m in metrics["distributions"]})
    return by_name


@pytest.mark.parametrize("family", ["qwen3_asr", "whisper"])
def test_tiny_models_run_batched_through_run_inference(
    family: str, tiny_qwen: Path, tiny_whisper: Path
) -> None:
    model_dir = tiny_qwen if family == "qwen3_asr" else tiny_whisper
    utts = utterances(10)
    opts = AsrOptions(model_dir=str(model_dir), max_new_tokens=4, beam_size=1, max_batch_size=4)
    handler = model_handler(opts)
    assert isinstance(handler, TransformersAsrModelHandler)
    name = model_dir.name

    def check(got: list[Transcript]) -> None:
        assert len(got) == 10
        by_call = {t.call_id: t for t in got}
        for u in utts:
            t = by_call[u.call_id]
            # The element carries its event time and identity through the batch.
            assert (t.channel, t.start_ms, t.end_ms) == (u.channel, u.start_ms, u.end_ms)
            assert (t.backend, t.model_id) == ("transformers", name)
            assert -100.0 <= t.confidence <= 0.0
            assert t.alternatives == () and t.words == ()
            if u.language_hint in ("en", "zh"):
                assert t.language == u.language_hint  # a zh/en hint forces the language

    metrics = run_stage(handler, utts, check)
    assert metrics["num_inferences"] == 10
    batches = metrics["inference_batch_latency_micro_secs"].count
    assert 3 <= batches < 10, f"{batches} batches for 10 utterances with max_batch_size=4"


def test_n_best_sampling_and_domain_terms(tiny_qwen: Path, tiny_whisper: Path) -> None:
    utts = utterances(3, seed=1)
    for model_dir in (tiny_qwen, tiny_whisper):
        nbest = model_handler(
            AsrOptions(model_dir=str(model_dir), max_new_tokens=4, beam_size=3,
                       max_alternatives=3, domain_terms=("refund", "信用卡"))
        )  # fmt: skip
        out = list(nbest.run_inference(utts, nbest.load_model()))
        assert len(out) == 3 and all(len(t.alternatives) == 2 for t in out)
        sampled = model_handler(
            AsrOptions(model_dir=str(model_dir), max_new_tokens=4, beam_size=1, temperature=0.9)
        )
        assert len(list(sampled.run_inference(utts, sampled.load_model()))) == 3


def test_whisper_identifies_the_language_when_not_forced(tiny_whisper: Path) -> None:
    handler = model_handler(AsrOptions(model_dir=str(tiny_whisper), max_new_tokens=2))
    utts = [u._replace(language_hint=None) for u in utterances(2)]
    out = list(handler.run_inference(utts, handler.load_model()))
    # Identified from Whisper's language token (random weights pick some language).
    assert all(len(t.language) in (2, 3) and t.language.isalpha() for t in out)
    forced = model_handler(AsrOptions(model_dir=str(tiny_whisper), max_new_tokens=2, language="de"))
    assert {t.language for t in forced.run_inference(utts, forced.load_model())} == {"de"}


def test_cpu_gets_fp32_and_impossible_choices_are_refused(tiny_qwen: Path) -> None:
    assert not torch.cuda.is_available(), "this is the CPU twin of the GPU test below"
    assert resolve_torch_device(AsrOptions(model_dir="m")) == ("cpu", "fp32")
    with pytest.raises(ValueError, match="fp16 is not supported on CPU"):
        resolve_torch_device(AsrOptions(model_dir="m", model_precision="fp16"))
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_torch_device(AsrOptions(model_dir="m", device="cuda"))
    m = model_handler(AsrOptions(model_dir=str(tiny_qwen))).load_model()
    assert m.device == "cpu" and next(m.model.parameters()).dtype == torch.float32


@pytest.mark.gpu
def test_gpu_gets_bf16_and_runs(tiny_qwen: Path) -> None:
    assert resolve_torch_device(AsrOptions(model_dir="m"))[0] == "cuda"
    handler = model_handler(AsrOptions(model_dir=str(tiny_qwen), max_new_tokens=4))
    m = handler.load_model()
    assert next(m.model.parameters()).dtype in (torch.bfloat16, torch.float16)
    assert len(list(handler.run_inference(utterances(4), m))) == 4


def test_checkpoint_with_missing_weights_is_refused(tiny_qwen: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_qwen.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(broken / "model.safetensors")
    dropped = next(k for k in weights if "audio_tower" in k or "encoder" in k)
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLayoutError, match="weights missing.*random values"):
        model_handler(AsrOptions(model_dir=str(broken))).load_model()
