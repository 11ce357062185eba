"""The transformers ASR backend: Qwen3-ASR (``-hf`` layout) and Whisper, batched across calls.

One handler serves both families; they differ in how a batch becomes model inputs and how
generated ids become text and a language. A RunInference batch is cut into length buckets
(longest/shortest ≤ ``bucket_max_ratio``) so padding stays small, and each bucket is one
``generate`` call. Device auto: CUDA with bf16 (fp16 where bf16 is missing), else CPU with
fp32 (bf16 on this CPU is ~15× slower than fp32).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from schemas.records import DeadLetter, Transcript, Utterance
from transforms.asr.options import (
    BACKEND_TRANSFORMERS,
    FAMILY_QWEN3_ASR,
    FAMILY_WHISPER,
    AsrOptions,
    ModelLayoutError,
    batch_kwargs,
    detect_model,
    forced_language,
    isolating_failures,
    make_transcript,
    prompt_terms,
    similar_length_groups,
    utterance_samples,
    validate_options,
)

_LOG = logging.getLogger(__name__)
_DTYPES: Final = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_CLASSES: Final = {
    FAMILY_QWEN3_ASR: ("Qwen3ASRForConditionalGeneration", "Qwen3ASRProcessor"),
    FAMILY_WHISPER: ("WhisperForConditionalGeneration", "WhisperProcessor"),
}
#: RunInference's default length buckets for this backend (utterance seconds).
DEFAULT_LENGTH_BUCKETS_S: Final = (4.0, 9.0, 16.0)


@dataclass(frozen=True)
class LoadedModel:
    """The model and its processor on a worker (a plain class: Beam's Shared keeps a weakref)."""

    model: Any
    processor: Any
    device: str
    dtype: Any
    family: str
    languages: dict[str, str]  # Qwen3-ASR: language name (lower case) → code


def resolve_torch_device(opts: AsrOptions) -> tuple[str, str]:
    """(device, precision) for this machine: cuda + bf16/fp16 when a GPU is there, else cpu +
    fp32. An explicit choice the machine cannot run is refused."""
    import torch

    cuda = torch.cuda.is_available()
    device = opts.device
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise RuntimeError("device=cuda but torch sees no CUDA GPU on this worker")
    precision = opts.model_precision
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if device == "cpu" and precision == "fp16":
        raise ValueError("model_precision=fp16 is not supported on CPU; use fp32 (or bf16)")
    if device == "cpu" and precision == "bf16":
        _LOG.warning("bf16 on CPU runs ~15x slower than fp32 on CPUs without AMX")
    return device, precision


class TransformersAsrModelHandler(ModelHandler[Utterance, Transcript | DeadLetter, LoadedModel]):
    """``Utterance`` → ``Transcript`` with a transformers Qwen3-ASR or Whisper model."""

    def __init__(self, opts: AsrOptions, family: str) -> None:
        super().__init__()
        self._opts = opts
        self._family = family

    def load_model(self) -> LoadedModel:
        import torch

        kind = detect_model(self._opts.model_dir)
        validate_options(self._opts, kind)
        device, precision = resolve_torch_device(self._opts)
        dtype = getattr(torch, _DTYPES[precision])
        import transformers

        model_cls: Any = getattr(transformers, _CLASSES[kind.family][0])
        processor_cls: Any = getattr(transformers, _CLASSES[kind.family][1])
        model, info = model_cls.from_pretrained(
            self._opts.model_dir, dtype=dtype, output_loading_info=True
        )
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            raise ModelLayoutError(
                f"{self._opts.model_dir}: {len(missing)} weights missing from the checkpoint "
                f"(e.g. {missing[0]}); transformers would fill them with random values. Is it "
                "the -hf layout?"
            )
        model = model.to(device).eval()
        processor = processor_cls.from_pretrained(self._opts.model_dir)
        languages: dict[str, str] = {}
        if kind.family == FAMILY_QWEN3_ASR:
            from transformers.models.qwen3_asr.processing_qwen3_asr import (
                LANGUAGE_CODE_TO_NAME,
            )

            languages = {name.lower(): code for code, name in LANGUAGE_CODE_TO_NAME.items()}
        _LOG.info("ASR %s loaded on %s/%s", self._opts.model_dir, device, precision)
        return LoadedModel(model, processor, device, dtype, kind.family, languages)

    def run_inference(
        self,
        batch: Sequence[Utterance],
        model: LoadedModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Transcript | DeadLetter]:
        return isolating_failures(batch, lambda utts: self._run_batch(utts, model))

    def _run_batch(self, batch: Sequence[Utterance], model: LoadedModel) -> Iterator[Transcript]:
        samples = [utterance_samples(u) for u in batch]
        buckets = similar_length_groups(
            [len(s) for s in samples], self._opts.bucket_max_ratio, self._opts.max_batch_size
        )
        for bucket in buckets:
            # One generate call needs one forced language (Whisper): split by it.
            by_language: dict[str | None, list[int]] = {}
            for i in bucket:
                by_language.setdefault(forced_language(self._opts, batch[i]), []).append(i)
            for language, idx in by_language.items():
                yield from self._transcribe(
                    model, [batch[i] for i in idx], [samples[i] for i in idx], language
                )

    def _transcribe(
        self,
        m: LoadedModel,
        utts: list[Utterance],
        audio: list[np.ndarray],
        language: str | None,
    ) -> Iterator[Transcript]:
        import torch

        o = self._opts
        k = o.max_alternatives
        gen: dict[str, Any] = {
            "max_new_tokens": o.max_new_tokens,
            "num_beams": o.beam_size,
            "num_return_sequences": k,
            "return_dict_in_generate": True,
            "output_scores": True,
        }
        if o.temperature > 0:
            gen.update(do_sample=True, temperature=o.temperature)
        else:
            gen.update(do_sample=False)
        if m.family == FAMILY_QWEN3_ASR:
            terms = prompt_terms(o)
            prompt = f"Domain terms: {terms}" if terms else None
            inputs = m.processor.apply_transcription_request(
                audio=audio,
                language=[language] * len(audio) if language else None,
                prompt=[prompt] * len(audio) if prompt else None,
            )
        else:
            inputs = m.processor.feature_extractor(
                audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True
            )
            gen.update(task="transcribe", language=language)
            if terms := prompt_terms(o):
                gen["prompt_ids"] = torch.tensor(
                    m.processor.get_prompt_ids(terms, return_tensors="np")
                ).to(m.device)
        inputs = {
            key: (v.to(m.device, m.dtype) if v.is_floating_point() else v.to(m.device))
            for key, v in inputs.items()
            if hasattr(v, "to")
        }
        with torch.inference_mode():
            out = m.model.generate(**inputs, **gen)
        n_new = len(out.scores)
        new_ids = out.sequences[:, -n_new:] if n_new else out.sequences[:, :0]
        confidences = _confidences(m.model, out, new_ids, o.beam_size)
        texts, langs = self._decode(m, new_ids, out.sequences, language)
        for j, utt in enumerate(utts):
            rows = range(j * k, (j + 1) * k)
            top = rows[0]
            yield make_transcript(
                utt,
                o,
                BACKEND_TRANSFORMERS,
                texts[top],
                langs[top],
                confidences[top],
                alternatives=tuple(texts[r].strip() for r in rows[1:]),
            )

    def _decode(
        self, m: LoadedModel, new_ids: Any, sequences: Any, language: str | None
    ) -> tuple[list[str], list[str]]:
        if m.family == FAMILY_QWEN3_ASR:
            if language:  # forced: the prompt ended in "language X<asr_text>"
                texts = m.processor.batch_decode(new_ids, skip_special_tokens=True)
                return texts, [language] * len(texts)
            parsed = m.processor.decode(new_ids, return_format="parsed")
            return (
                [p["transcription"] for p in parsed],
                [m.languages.get((p["language"] or "").lower(), "") for p in parsed],
            )
        texts = m.processor.batch_decode(new_ids, skip_special_tokens=True)
        if language:
            return texts, [language] * len(texts)
        tok = m.processor.tokenizer
        langs = []
        for seq in sequences.tolist():
            tokens = tok.convert_ids_to_tokens(seq)
            code = next(
                (t[2:-2] for t in tokens if t and t.startswith("<|") and t[2:-2].isalpha()
                 and t[2:-2].islower() and t not in _WHISPER_TASK_TOKENS),
                "",
            )  # fmt: skip
            langs.append(code)
        return texts, langs

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return batch_kwargs(self._opts, DEFAULT_LENGTH_BUCKETS_S)

    def get_metrics_namespace(self) -> str:
        return "callqa.asr"

    def share_model_across_processes(self) -> bool:
        return self._opts.large_model

    def model_copies(self) -> int:
        return self._opts.model_copies


_WHISPER_TASK_TOKENS: Final = frozenset(
    {"<|transcribe|>", "<|translate|>", "<|notimestamps|>", "<|startoftranscript|>",
     "<|endoftext|>", "<|startofprev|>", "<|startoflm|>", "<|nospeech|>", "<|nocaptions|>"}
)  # fmt: skip


def _confidences(model: Any, out: Any, new_ids: Any, beam_size: int) -> list[float]:
    """Mean log-probability per returned sequence over its generated tokens (pads excluded)."""
    import torch

    if beam_size > 1 and getattr(out, "sequences_scores", None) is not None:
        # Beam search already length-normalises the sum of log-probabilities.
        return [float(s) for s in out.sequences_scores]
    scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    cfg = model.generation_config
    pad = cfg.pad_token_id
    valid = torch.ones_like(new_ids, dtype=torch.bool) if pad is None else new_ids != pad
    valid &= torch.isfinite(scores)
    total = torch.where(valid, scores, torch.zeros_like(scores)).sum(-1)
    count = valid.sum(-1).clamp(min=1)
    return [float(x) for x in (total / count)]
