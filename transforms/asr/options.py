"""What both ASR backends share: ``AsrOptions`` and its checks, model-directory detection
(``detect_model``), Whisper's language table, the batching helpers (RunInference's batch
queues, similar-length groups) and the ``Transcript`` a decode becomes (``make_transcript``).

Every knob of ``AsrOptions`` is either honoured by the chosen backend or refused by
``validate_options`` with a sentence saying why; nothing is silently ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from schemas.audio import PIPELINE_SAMPLE_RATE_HZ
from schemas.records import DeadLetter, Transcript, Utterance, Word, dead_letter
from transforms.core.audio import resample
from transforms.core.script import ZH_SCRIPTS, language_class, to_script
from transforms.core.terms import correct_terms

BACKEND_FASTER_WHISPER: Final = "faster-whisper"
BACKEND_TRANSFORMERS: Final = "transformers"
BACKENDS: Final = ("auto", BACKEND_FASTER_WHISPER, BACKEND_TRANSFORMERS)
FAMILY_WHISPER: Final = "whisper"
FAMILY_QWEN3_ASR: Final = "qwen3_asr"
#: ``model_precision`` values per backend ("auto" picks by device).
PRECISIONS: Final[dict[str, tuple[str, ...]]] = {
    BACKEND_FASTER_WHISPER: ("auto", "int8", "int8_float32", "int8_float16", "float16",
                             "bfloat16", "float32"),
    BACKEND_TRANSFORMERS: ("auto", "fp32", "fp16", "bf16"),
}  # fmt: skip
#: Event-header language hints that force a language when ``language`` is "auto".
HINTED_LANGUAGES: Final = frozenset({"zh", "en"})
#: Languages written in Han characters of their own, which the zh script conversion leaves.
_OWN_HAN_SCRIPT: Final = frozenset({"ja", "ko"})


class ModelLayoutError(ValueError):
    """The model directory is not one the ASR stage can load correctly."""


class ModelKind(NamedTuple):
    backend: str  # faster-whisper | transformers
    family: str  # whisper | qwen3_asr


@dataclass(frozen=True)
class AsrOptions:
    model_dir: str  # CTranslate2 Whisper dir, or a Hugging Face (transformers) model dir
    backend: str = "auto"  # auto: from what model_dir holds
    device: str = "auto"  # auto | cpu | cuda
    model_precision: str = "auto"  # see PRECISIONS; auto: int8/fp32 on CPU, fp16/bf16 on CUDA
    beam_size: int = 5
    temperature: float = 0.0  # 0: deterministic search; > 0 samples
    max_alternatives: int = 1  # n-best: hypotheses kept per utterance (top + alternatives)
    enable_word_timestamps: bool = False
    language: str = "auto"  # auto: a zh/en header hint forces it, else identified per utterance
    # Languages expected on the calls: language id prefers them unless another is clearly more
    # likely (faster-whisper's ranked detection; () accepts Whisper's top guess).
    language_candidates: tuple[str, ...] = ("zh", "en")
    domain_terms: tuple[str, ...] = ()  # bias recognition (Whisper prompt, Qwen3-ASR context)
    # How the terms bias: the decoder's prompt (Qwen3-ASR's context), and a correction of the
    # output (transforms.core.terms: a span that sounds or is spelled like a term becomes it).
    domain_terms_prompt: bool = True
    domain_terms_correction: bool = True
    # How Mandarin transcripts are written (transforms.core.script.ZH_SCRIPTS): Whisper writes
    # traditional characters for some Mandarin utterances; OpenCC converts its output.
    zh_script: str = "simplified"
    # faster-whisper: prompt Mandarin utterances with a sentence in that script (ZH_PROMPTS).
    # Off: on the evaluation corpus the prompt did not lower clean CER (0.124 vs 0.127) and
    # raised it in babble, on telephony and on code-switched speech (docs/asr.md); OpenCC
    # alone gives simplified script.
    zh_prompt: bool = False
    max_new_tokens: int = 256  # transformers: cap per utterance
    max_batch_size: int = 8
    # > 0: a streaming batch waits at most this long for more utterances (Beam's stateful
    # BatchElements, one queue per length bucket). 0 (the default): batches form within a
    # bundle, with no state or timer. On Prism 2.77 with its bundle splits on, the stateful
    # path re-emitted a flushed batch and lost an utterance (6 utterances transcribed 3 times
    # and one never, in 3 of 17 runs of test_qa_call; the job now runs Prism without splits,
    # see beam_jobs/runner.py). At 0, latency is the same (README, latency table).
    max_batch_duration_s: float = 0.0
    # Utterances wait for the ASR in this many keyed queues. A queue runs one batch at a time,
    # and its next batch takes every utterance that queued meanwhile, so batches grow with the
    # backlog and nothing waits behind a half-full batch. Each queue decodes on its own model
    # worker (faster-whisper's num_workers). 0: one per CPU on a CPU worker, one per machine
    # with a GPU (``transforms.asr.transcribe.resolve_queues``); bounded runs pass 1.
    queues: int = 0
    bucket_max_ratio: float = 1.5  # transformers: longest/shortest utterance per padded batch
    # RunInference batch queues by utterance length; () picks per backend (faster-whisper:
    # the lengths that share its minimum window go together).
    length_buckets_s: tuple[float, ...] = ()
    # faster-whisper: the encoder window per utterance, at least this long (30: Whisper's
    # standard padded window). 10 s: ~5x less work on short utterances, WER 0.052 vs 0.046
    # on the English demo turns.
    min_window_s: float = 10.0
    large_model: bool = False  # one model per machine shared by the worker processes
    model_copies: int = 1  # with large_model: copies per machine (GPU workers)
    # faster-whisper threads per decode; 0: the CPUs this process may use, shared by the queues
    # (2 CPUs, 2 queues: one thread each)
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if min(self.beam_size, self.max_alternatives, self.max_batch_size) < 1:
            raise ValueError("beam_size, max_alternatives and max_batch_size must be >= 1")
        if self.queues < 0 or self.cpu_threads < 0:
            raise ValueError("queues and cpu_threads must be >= 0 (0: automatic)")
        if self.zh_script not in ZH_SCRIPTS:
            raise ValueError(f"zh_script must be one of {', '.join(ZH_SCRIPTS)}, not "
                             f"{self.zh_script!r}")  # fmt: skip
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if (
            self.max_alternatives > 1
            and self.temperature == 0
            and self.max_alternatives > (self.beam_size)
        ):
            raise ValueError(
                f"max_alternatives={self.max_alternatives} needs beam_size >= it "
                f"(beam_size={self.beam_size}): the n-best list comes from the beams"
            )
        if self.model_copies < 1 or (self.model_copies > 1 and not self.large_model):
            raise ValueError("model_copies > 1 needs large_model (copies per machine)")
        if self.bucket_max_ratio < 1:
            raise ValueError("bucket_max_ratio must be >= 1")
        if not 1 <= self.min_window_s <= 30:
            raise ValueError("min_window_s must be within [1, 30] (Whisper's window is 30 s)")


def detect_model(model_dir: str | Path) -> ModelKind:
    """Which backend and model family ``model_dir`` holds; refuses what would load wrongly."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelLayoutError(
            f"ASR model directory {d} does not exist; run `callqa models install` for the "
            "embedded model or pass --asr=<model directory>"
        )
    if (d / "model.bin").exists():
        missing = [f for f in ("config.json", "tokenizer.json") if not (d / f).exists()]
        if missing:
            raise ModelLayoutError(
                f"{d} has a CTranslate2 model.bin but no {', '.join(missing)}; "
                "convert the model with ct2-transformers-converter --copy_files tokenizer.json"
            )
        return ModelKind(BACKEND_FASTER_WHISPER, FAMILY_WHISPER)
    cfg_path = d / "config.json"
    if not cfg_path.exists():
        raise ModelLayoutError(
            f"{d} holds neither a CTranslate2 model (model.bin) nor a Hugging Face model "
            "(config.json)"
        )
    cfg = json.loads(cfg_path.read_text())
    if "thinker_config" in cfg:
        raise ModelLayoutError(
            f"{d} is a Qwen3-ASR checkpoint in the original layout (config.json has "
            "thinker_config): transformers would load it without an error but with random "
            "weights. Use the -hf checkpoint (e.g. Qwen/Qwen3-ASR-1.7B-hf), which "
            "transformers >= 5.13 loads natively"
        )
    model_type = cfg.get("model_type")
    if model_type in (FAMILY_QWEN3_ASR, FAMILY_WHISPER):
        return ModelKind(BACKEND_TRANSFORMERS, model_type)
    raise ModelLayoutError(
        f"{d}: model_type {model_type!r} is not an ASR model this stage runs (qwen3_asr or whisper)"
    )


def validate_options(opts: AsrOptions, kind: ModelKind) -> None:
    """Refuse, with a reason, every knob the chosen backend cannot honour."""
    if opts.backend != "auto" and opts.backend != kind.backend:
        raise ValueError(f"backend={opts.backend!r} but {opts.model_dir} is a {kind.backend} model")
    if opts.model_precision not in PRECISIONS[kind.backend]:
        raise ValueError(
            f"model_precision={opts.model_precision!r} is not one the {kind.backend} backend "
            f"takes ({', '.join(PRECISIONS[kind.backend])})"
        )
    if kind.backend == BACKEND_FASTER_WHISPER:
        if opts.max_alternatives > 1 and opts.enable_word_timestamps:
            raise ValueError(
                "max_alternatives > 1 (n-best) cannot be combined with word timestamps on "
                "faster-whisper (words come from its single-hypothesis decode)"
            )
        if opts.large_model:
            raise ValueError(
                "large_model shares a PyTorch model across processes; CTranslate2 models "
                "(faster-whisper) load per process"
            )
    if kind.backend == BACKEND_TRANSFORMERS:
        if opts.enable_word_timestamps:
            raise ValueError(
                "enable_word_timestamps is supported by the faster-whisper backend only "
                "(Qwen3-ASR word times need its separate forced-aligner model)"
            )
        if opts.cpu_threads:
            raise ValueError("cpu_threads applies to faster-whisper; torch uses its own pool")
    if kind.family == FAMILY_WHISPER and opts.language not in ("auto", *_WHISPER_LANGUAGES):
        raise ValueError(f"language={opts.language!r} is not a Whisper language code")


#: Whisper's language codes (the multilingual tokenizer's language tokens).
_WHISPER_LANGUAGES: Final = frozenset(
    [
        "en",
        "zh",
        "de",
        "es",
        "ru",
        "ko",
        "fr",
        "ja",
        "pt",
        "tr",
        "pl",
        "ca",
        "nl",
        "ar",
        "sv",
        "it",
        "id",
        "hi",
        "fi",
        "vi",
        "he",
        "uk",
        "el",
        "ms",
        "cs",
        "ro",
        "da",
        "hu",
        "ta",
        "no",
        "th",
        "ur",
        "hr",
        "bg",
        "lt",
        "la",
        "mi",
        "ml",
        "cy",
        "sk",
        "te",
        "fa",
        "lv",
        "bn",
        "sr",
        "az",
        "sl",
        "kn",
        "et",
        "mk",
        "br",
        "eu",
        "is",
        "hy",
        "ne",
        "mn",
        "bs",
        "kk",
        "sq",
        "sw",
        "gl",
        "mr",
        "pa",
        "si",
        "km",
        "sn",
        "yo",
        "so",
        "af",
        "oc",
        "ka",
        "be",
        "tg",
        "sd",
        "gu",
        "am",
        "yi",
        "lo",
        "uz",
        "fo",
        "ht",
        "ps",
        "tk",
        "nn",
        "mt",
        "sa",
        "lb",
        "my",
        "bo",
        "tl",
        "mg",
        "as",
        "tt",
        "haw",
        "ln",
        "ha",
        "ba",
        "jw",
        "su",
        "yue",
    ]
)


def forced_language(opts: AsrOptions, utt: Utterance) -> str | None:
    """The language to force for ``utt``, or None to identify it."""
    if opts.language != "auto":
        return opts.language
    return utt.language_hint if utt.language_hint in HINTED_LANGUAGES else None


def utterance_samples(utt: Utterance) -> np.ndarray:
    """16-bit PCM → float32 in [-1, 1) at the pipeline's 16 kHz."""
    samples = np.frombuffer(utt.pcm, dtype="<i2").astype(np.float32) / 32768.0
    return resample(samples, utt.sample_rate_hz, PIPELINE_SAMPLE_RATE_HZ)


#: Whisper's previous-text prompt for Mandarin in each script: a sentence in that script
#: primes the decoder to write it (and to write Mandarin rather than translate).
ZH_PROMPTS: Final = {"simplified": "以下是普通话的句子。", "traditional": "以下是普通話的句子。"}


def whisper_prompt(opts: AsrOptions, language: str) -> str:
    """The text before Whisper's start token for an utterance in ``language``: the Mandarin
    script prompt (``opts.zh_prompt``), then the domain terms; "" for none."""
    parts = []
    if language == "zh" and opts.zh_prompt and opts.zh_script in ZH_PROMPTS:
        parts.append(ZH_PROMPTS[opts.zh_script])
    if (terms := prompt_terms(opts)) is not None:
        parts.append(terms)
    return " " + " ".join(parts) if parts else ""


def prompt_terms(opts: AsrOptions) -> str | None:
    """The domain terms as the decoder's prompt text, or None (none, or prompting off)."""
    return ", ".join(opts.domain_terms) if opts.domain_terms and opts.domain_terms_prompt else None


def make_transcript(
    utt: Utterance,
    opts: AsrOptions,
    backend: str,
    text: str,
    language: str,
    confidence: float,
    words: tuple[Word, ...] = (),
    alternatives: tuple[str, ...] = (),
) -> Transcript:
    if language not in _OWN_HAN_SCRIPT:
        text = to_script(text, opts.zh_script)
        alternatives = tuple(to_script(a, opts.zh_script) for a in alternatives)
    if opts.domain_terms and opts.domain_terms_correction:
        text = correct_terms(text, opts.domain_terms)
        alternatives = tuple(correct_terms(a, opts.domain_terms) for a in alternatives)
    text = text.strip()
    return Transcript(
        call_id=utt.call_id,
        channel=utt.channel,
        start_ms=utt.start_ms,
        end_ms=utt.end_ms,
        text=text,
        language=language or "",
        language_class=language_class(text, language or ""),
        confidence=confidence if math.isfinite(confidence) else -100.0,
        model_id=Path(opts.model_dir).name,
        backend=backend,
        words=words,
        alternatives=alternatives,
        speech_dbfs=pcm_dbfs(utt.pcm),
    )


def pcm_dbfs(pcm: bytes) -> float | None:
    """RMS level of 16-bit PCM in dB relative to full scale; None for digital silence."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    power = float(np.mean(x * x)) if len(x) else 0.0
    return round(10 * math.log10(power), 2) if power > 0 else None


def utterance_seconds(utt: Utterance) -> float:
    return (utt.end_ms - utt.start_ms) / 1000.0


def batch_kwargs(opts: AsrOptions, default_buckets_s: Sequence[float]) -> dict[str, Any]:
    """RunInference's batching: full batches when utterances queue up (the size does not ramp
    up from 1), at most ``max_batch_duration_s`` of waiting, and one batch queue per length
    bucket so an utterance is batched with others of similar length (less padding). The
    buckets are ``opts.length_buckets_s``, else the backend's ``default_buckets_s``."""
    if opts.max_batch_duration_s <= 0:  # batches within a bundle only (no state, no timer)
        return {"min_batch_size": opts.max_batch_size, "max_batch_size": opts.max_batch_size}
    return {
        "min_batch_size": opts.max_batch_size,
        "max_batch_size": opts.max_batch_size,
        "max_batch_duration_secs": opts.max_batch_duration_s,
        "length_fn": utterance_seconds,
        "bucket_boundaries": list(opts.length_buckets_s or default_buckets_s),
    }


def similar_length_groups(
    lengths: Sequence[int], max_ratio: float, max_size: int
) -> list[list[int]]:
    """Indices grouped so that in each group longest/shortest ≤ ``max_ratio`` and at most
    ``max_size`` items: shortest first, so padding in one ``generate`` call stays small."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if (
            buckets
            and len(buckets[-1]) < max_size
            and lengths[i] <= max_ratio * max(1, lengths[buckets[-1][0]])
        ):
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


#: The ASR stage's name in dead letters.
ASR_STAGE: Final = "transcribe"


def asr_dead_letter(utt: Utterance, error_type: Any, message: str) -> DeadLetter:
    """An utterance the ASR could not transcribe (reason ``asr_error``)."""
    return dead_letter(ASR_STAGE, "asr_error", error_type, message, call_id=utt.call_id,
                       event_time_ms=utt.start_ms, size_bytes=len(utt.pcm))  # fmt: skip


def isolating_failures(
    batch: Sequence[Utterance], decode: Callable[[Sequence[Utterance]], Iterable[Transcript]]
) -> list[Transcript | DeadLetter]:
    """``decode(batch)``; if the batch fails, each utterance alone, so that one utterance that
    makes the backend raise (a poison utterance) is one ``asr_error`` dead letter and the rest
    of its batch is still transcribed. A failure of every utterance (the model itself is broken)
    comes out as one dead letter each too."""
    try:
        return list(decode(batch))
    except Exception:  # noqa: BLE001 - retried one by one below
        if len(batch) == 1:
            raise
    out: list[Transcript | DeadLetter] = []
    for utt in batch:
        try:
            out.extend(decode([utt]))
        except Exception as exc:  # noqa: BLE001 - this utterance is the poison one
            out.append(asr_dead_letter(utt, type(exc), str(exc)))
    return out
