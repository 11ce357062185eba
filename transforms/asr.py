"""ASR backends as Beam ``ModelHandler`` s, used through ``RunInference`` (batching, one model
per worker process, inference metrics and a failure output come with it).

First backend: faster-whisper (CTranslate2), the embedded default on a fresh machine. int8 on
CPU; float16 on CUDA when a GPU is there (chosen at load time). The Transformers backends
(Qwen3-ASR, Whisper) and the pipeline wiring (``SegmentSpeech`` → ``Transcribe``) follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, RunInference

from schemas.audio import PIPELINE_SAMPLE_RATE_HZ
from schemas.records import DeadLetter, Transcript, Utterance
from transforms.recordings import resample

BACKEND_FASTER_WHISPER: Final = "faster-whisper"
STAGE: Final = "transcribe"
#: Hints that name one language force it; the others let the model identify the language.
_FORCED_LANGUAGES: Final = {"zh": "zh", "en": "en"}


@dataclass(frozen=True)
class WhisperOptions:
    model_dir: str  # a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json)
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    beam_size: int = 5
    cpu_threads: int = 0  # 0: CTranslate2's default
    initial_prompt: str | None = None  # domain terms that bias recognition
    max_batch_size: int = 8
    max_batch_duration_s: float = 1.0  # a streaming batch waits at most this long

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.beam_size < 1:
            raise ValueError("beam_size must be >= 1")


def resolve_device(opts: WhisperOptions) -> tuple[str, str]:
    """(device, compute_type) for this machine."""
    import ctranslate2

    device = opts.device
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute = opts.compute_type
    if compute == "auto":
        compute = "float16" if device == "cuda" else "int8"
    return device, compute


def utterance_samples(utt: Utterance) -> np.ndarray:
    """16-bit PCM → float32 in [-1, 1) at the pipeline's 16 kHz."""
    samples = np.frombuffer(utt.pcm, dtype="<i2").astype(np.float32) / 32768.0
    return resample(samples, utt.sample_rate_hz, PIPELINE_SAMPLE_RATE_HZ)


class FasterWhisperModelHandler(ModelHandler[Utterance, Transcript, Any]):
    """``Utterance`` → ``Transcript`` with a CTranslate2 Whisper model."""

    def __init__(self, opts: WhisperOptions) -> None:
        super().__init__()
        self._opts = opts

    def load_model(self) -> Any:
        from faster_whisper import WhisperModel

        model_dir = Path(self._opts.model_dir)
        missing = [
            f
            for f in ("model.bin", "config.json", "tokenizer.json")
            if not (model_dir / f).exists()
        ]
        if missing:
            raise RuntimeError(
                f"{model_dir} is not a CTranslate2 Whisper model (missing {', '.join(missing)}); "
                "run `callqa models install` for the embedded one or point --asr_model_dir at "
                "a converted model"
            )
        device, compute = resolve_device(self._opts)
        return WhisperModel(
            str(model_dir), device=device, compute_type=compute, cpu_threads=self._opts.cpu_threads
        )

    def run_inference(
        self,
        batch: Sequence[Utterance],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Transcript]:
        for utt in batch:
            language = _FORCED_LANGUAGES.get(utt.language_hint or "")
            segments, info = model.transcribe(
                utterance_samples(utt),
                language=language,
                beam_size=self._opts.beam_size,
                initial_prompt=self._opts.initial_prompt,
                condition_on_previous_text=False,
                vad_filter=False,  # utterances come from SegmentSpeech already
            )
            segments = list(segments)
            texts = [s.text for s in segments]
            logprobs = [s.avg_logprob for s in segments]
            yield Transcript(
                call_id=utt.call_id,
                channel=utt.channel,
                start_ms=utt.start_ms,
                end_ms=utt.end_ms,
                text="".join(texts).strip(),
                language=info.language,
                confidence=float(np.mean(logprobs)) if logprobs else float("-inf"),
                model_id=Path(self._opts.model_dir).name,
                backend=BACKEND_FASTER_WHISPER,
            )

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {
            "max_batch_size": self._opts.max_batch_size,
            "max_batch_duration_secs": self._opts.max_batch_duration_s,
        }

    def get_metrics_namespace(self) -> str:
        return "callqa.asr"

    def share_model_across_processes(self) -> bool:
        return False


def transcribe_failure(failure: Any) -> DeadLetter:
    """RunInference's failed element (``(utterance, exception)``) → a dead letter."""
    utt, exc = failure
    return DeadLetter(
        stage=STAGE,
        reason="asr_error",
        error_type=type(exc).__name__,
        message=str(exc)[:500],
        topic=None,
        partition=None,
        offset=None,
        call_id=utt.call_id,
        event_time_ms=utt.start_ms,
        payload_size_bytes=len(utt.pcm),
    )


class Transcribe(beam.PTransform):
    """``PCollection[Utterance]`` → ``transcripts`` (Transcript) and ``dead_letter``.

    RunInference batches utterances across calls (``max_batch_size``, and in streaming at most
    ``max_batch_duration_s`` of waiting) and loads the model once per worker process.
    """

    def __init__(self, opts: WhisperOptions) -> None:
        super().__init__()
        self._opts = opts

    def expand(self, utterances: beam.PCollection[Utterance]) -> dict[str, beam.PCollection]:
        main, other = (
            utterances
            | "RunInference"
            >> RunInference(FasterWhisperModelHandler(self._opts)).with_exception_handling()
        )
        return {
            "transcripts": main,
            "dead_letter": other.failed_inferences
            | "ToDeadLetter" >> beam.Map(transcribe_failure).with_output_types(DeadLetter),
        }
