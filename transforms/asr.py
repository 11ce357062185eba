"""The ASR stage: ``Utterance`` → ``Transcript`` through Beam's ``RunInference`` (batching
across calls, one model per worker process, inference metrics and a failure output come with
it).

Two backends, chosen from what the model directory holds (``detect_model``):

- **faster-whisper** (CTranslate2 ``model.bin``), the embedded default on a fresh machine:
  int8 on CPU, float16 on CUDA.
- **transformers** (``config.json`` with ``model_type`` ``qwen3_asr`` or ``whisper``):
  Qwen3-ASR (production: Qwen3-ASR-1.7B, ``-hf`` layout) and Whisper, see
  ``transforms.asr_transformers``. fp32 on CPU; bf16 (fp16 where bf16 is missing) on CUDA.

Every knob of ``AsrOptions`` is either honoured by the chosen backend or refused by
``validate_options`` with a sentence saying why; nothing is silently ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.transforms.window import TimestampedValue

from schemas.audio import PIPELINE_SAMPLE_RATE_HZ
from schemas.records import DeadLetter, Transcript, Utterance, Word, dead_letter
from transforms.core.audio import resample
from transforms.core.script import language_class

BACKEND_FASTER_WHISPER: Final = "faster-whisper"
BACKEND_TRANSFORMERS: Final = "transformers"
BACKENDS: Final = ("auto", BACKEND_FASTER_WHISPER, BACKEND_TRANSFORMERS)
FAMILY_WHISPER: Final = "whisper"
FAMILY_QWEN3_ASR: Final = "qwen3_asr"
STAGE: Final = "transcribe"
#: ``model_precision`` values per backend ("auto" picks by device).
PRECISIONS: Final[dict[str, tuple[str, ...]]] = {
    BACKEND_FASTER_WHISPER: ("auto", "int8", "int8_float32", "int8_float16", "float16",
                             "bfloat16", "float32"),
    BACKEND_TRANSFORMERS: ("auto", "fp32", "fp16", "bf16"),
}  # fmt: skip
#: faster-whisper's default: retried at these temperatures when a decode looks degenerate.
WHISPER_FALLBACK_TEMPERATURES: Final = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: A language outside ``language_candidates`` is reported only when this likely.
OTHER_LANGUAGE_MIN_P: Final = 0.8
#: Re-decodes of a repetitive output (sampled, batched), after the first deterministic one.
WHISPER_RETRY_TEMPERATURES: Final = (0.4, 0.8)
#: Event-header language hints that force a language when ``language`` is "auto".
HINTED_LANGUAGES: Final = frozenset({"zh", "en"})


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
    max_new_tokens: int = 256  # transformers: cap per utterance
    max_batch_size: int = 8
    # > 0: a streaming batch waits at most this long for more utterances (Beam's stateful
    # BatchElements, one queue per length bucket). 0 (the default): batches form within a
    # bundle, with no state or timer. On Prism 2.77 with its bundle splits on, the stateful
    # path re-emitted a flushed batch and lost an utterance (6 utterances transcribed 3 times
    # and one never, in 3 of 17 runs of test_qa_call; the job now runs Prism without splits,
    # see beam_jobs/runner.py). At 0, latency is the same (README, latency table).
    max_batch_duration_s: float = 0.0
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
    cpu_threads: int = 0  # faster-whisper; 0: one per CPU this process may use

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.beam_size < 1 or self.max_alternatives < 1 or self.max_batch_size < 1:
            raise ValueError("beam_size, max_alternatives and max_batch_size must be >= 1")
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


def available_cpus() -> int:
    """CPUs this process may run on. CTranslate2's own default oversubscribes small machines:
    inside a Beam worker (whose runner threads also want CPU) it decoded 2.3x slower on 2
    cores than with one thread per CPU."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(opts: AsrOptions) -> tuple[str, str]:
    """(device, compute type) for the faster-whisper backend on this machine."""
    import ctranslate2

    device = opts.device
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute = opts.model_precision
    if compute == "auto":
        compute = "float16" if device == "cuda" else "int8"
    return device, compute


#: Whisper's window: 30 s of 10 ms mel frames. Shorter windows are padded up to a multiple of
#: WINDOW_STEP_FRAMES after WINDOW_TAIL_FRAMES of silence.
WHISPER_FRAMES: Final = 3000
WINDOW_STEP_FRAMES: Final = 200
WINDOW_TAIL_FRAMES: Final = 100


def whisper_window_frames(n_frames: int, min_window_s: float) -> int:
    """Frames the encoder sees for an utterance of ``n_frames``: the utterance plus 1 s of
    silence, rounded up to 2 s steps, at least ``min_window_s`` and at most Whisper's 30 s."""
    steps = -(-(n_frames + WINDOW_TAIL_FRAMES) // WINDOW_STEP_FRAMES)
    frames = max(steps * WINDOW_STEP_FRAMES, int(min_window_s * 100))
    return min(WHISPER_FRAMES, frames)


def _same_window_buckets(windows: Sequence[int], max_size: int) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w, []).append(i)
    return [g[k : k + max_size] for g in groups.values() for k in range(0, len(g), max_size)]


def pick_language(ranked: Sequence[tuple[str, float]], candidates: Sequence[str]) -> str:
    """Whisper's ranked ``("<|xx|>", p)`` list → a language code. The expected languages win
    unless another one is clearly more likely (noise makes Whisper's language id wander: at
    10 dB SNR it called English "fi")."""
    codes = [(token[2:-2], p) for token, p in ranked]
    top, p_top = codes[0]
    if not candidates or top in candidates or p_top >= OTHER_LANGUAGE_MIN_P:
        return top
    return max((c for c in codes if c[0] in candidates), key=lambda c: c[1], default=codes[0])[0]


def is_repetitive(text: str) -> bool:
    """Whisper's test for a decoding loop: gzip compresses the text more than 2.4×."""
    import zlib

    data = text.encode()
    return len(data) / max(1, len(zlib.compress(data))) > 2.4


class FasterWhisperModelHandler(ModelHandler[Utterance, Transcript, Any]):
    """``Utterance`` → ``Transcript`` with a CTranslate2 Whisper model (faster-whisper)."""

    def __init__(self, opts: AsrOptions) -> None:
        super().__init__()
        self._opts = opts
        self._retries = Metrics.counter("callqa.asr", "whisper_retry_decodes")

    def load_model(self) -> Any:
        from faster_whisper import WhisperModel

        validate_options(self._opts, detect_model(self._opts.model_dir))
        device, compute = resolve_device(self._opts)
        return WhisperModel(
            self._opts.model_dir,
            device=device,
            compute_type=compute,
            cpu_threads=self._opts.cpu_threads or available_cpus(),
        )

    def run_inference(
        self,
        batch: Sequence[Utterance],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Transcript]:
        if self._opts.enable_word_timestamps:  # word alignment: faster-whisper's own path
            for utt in batch:
                yield self._transcribe_one(model, utt)
            return
        feats = [model.feature_extractor(utterance_samples(u)) for u in batch]
        windows = [whisper_window_frames(f.shape[1], self._opts.min_window_s) for f in feats]
        for bucket in _same_window_buckets(windows, self._opts.max_batch_size):
            yield from self._decode_batch(
                model, [batch[i] for i in bucket], [feats[i] for i in bucket], windows[bucket[0]]
            )

    def _decode_batch(
        self, model: Any, utts: list[Utterance], feats: list[np.ndarray], frames: int
    ) -> Iterator[Transcript]:
        """One encoder pass and one ``generate`` call for utterances of one window size."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        o = self._opts
        x = np.zeros((len(feats), feats[0].shape[0], frames), np.float32)
        for i, f in enumerate(feats):
            x[i, :, : min(frames, f.shape[1])] = f[:, :frames]
        encoded = model.model.encode(ctranslate2.StorageView.from_array(x), to_cpu=False)
        forced = [forced_language(o, u) for u in utts]
        languages: list[str] = [lang or "" for lang in forced]
        if None in forced:
            detected = model.model.detect_language(encoded)
            languages = [
                lang or pick_language(ranked, o.language_candidates)
                for lang, ranked in zip(forced, detected, strict=True)
            ]
        prompt = (
            model.hf_tokenizer.encode(" " + ", ".join(o.domain_terms), add_special_tokens=False).ids
            if o.domain_terms
            else []
        )
        tokenizers = {
            lang: Tokenizer(model.hf_tokenizer, True, task="transcribe", language=lang)
            for lang in set(languages)
        }
        prompts = []
        for lang in languages:
            tok = tokenizers[lang]
            prefix = [tok.sot_prev, *prompt[-223:]] if prompt else []
            prompts.append([*prefix, *tok.sot_sequence, tok.no_timestamps])
        results = self._generate(model, encoded, prompts, o.temperature)

        text_tok = tokenizers[languages[0]]  # decoding text does not depend on the language

        def texts_of(result: Any) -> list[str]:  # special tokens (>= end of text) dropped
            eot = text_tok.eot
            return [text_tok.decode([t for t in ids if t < eot]) for ids in result.sequences_ids]

        decoded = [texts_of(r) for r in results]
        scores = [float(r.scores[0]) for r in results]
        # Whisper's guard against decoding loops: redo repetitive outputs with sampling at
        # rising temperatures (its low-log-probability trigger is left out: on the unclear
        # audio it fires for, retries cost 2-6 decodes and rarely help; the score is kept).
        for temperature in WHISPER_RETRY_TEMPERATURES:
            redo = [i for i, texts in enumerate(decoded) if is_repetitive(texts[0])]
            if not redo:
                break
            self._retries.inc(len(redo))
            x_redo = ctranslate2.StorageView.from_array(x[redo])
            again = self._generate(model, x_redo, [prompts[i] for i in redo], temperature)
            for i, r in zip(redo, again, strict=True):
                decoded[i] = texts_of(r)
                scores[i] = float(r.scores[0])
        for utt, lang, texts, score in zip(utts, languages, decoded, scores, strict=True):
            yield make_transcript(
                utt, o, BACKEND_FASTER_WHISPER, texts[0], lang, score,
                alternatives=tuple(t.strip() for t in texts[1:]),
            )  # fmt: skip

    def _generate(self, model: Any, features: Any, prompts: list, temperature: float) -> Any:
        o = self._opts
        sampling = temperature > 0
        return model.model.generate(
            features,
            prompts,
            beam_size=1 if sampling else o.beam_size,
            num_hypotheses=o.max_alternatives,
            sampling_topk=0 if sampling else 1,
            sampling_temperature=temperature if sampling else 1.0,
            return_scores=True,
            max_length=448,
        )

    def _transcribe_one(self, model: Any, utt: Utterance) -> Transcript:
        """faster-whisper's own decode: a 30 s window, the temperature fallback schedule and
        word alignment."""
        o = self._opts
        segments, info = model.transcribe(
            utterance_samples(utt),
            language=forced_language(o, utt),
            beam_size=o.beam_size,
            # 0: Whisper's standard schedule — greedy/beam first, then higher temperatures
            # only when the output is degenerate (repetition, low log-probability).
            temperature=o.temperature or WHISPER_FALLBACK_TEMPERATURES,
            initial_prompt=", ".join(o.domain_terms) or None,
            word_timestamps=o.enable_word_timestamps,
            condition_on_previous_text=False,
            vad_filter=False,  # utterances come from SegmentSpeech already
        )
        segments = list(segments)
        words = tuple(
            Word(
                w.word.strip(),
                utt.start_ms + round(w.start * 1000),
                utt.start_ms + round(w.end * 1000),
                float(w.probability),
            )
            for s in segments
            for w in (s.words or ())
        )
        logprobs = [s.avg_logprob for s in segments]
        return make_transcript(
            utt,
            o,
            BACKEND_FASTER_WHISPER,
            "".join(s.text for s in segments),
            info.language,
            float(np.mean(logprobs)) if logprobs else float("-inf"),
            words=words,
        )

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return batch_kwargs(self._opts, BACKEND_FASTER_WHISPER)

    def get_metrics_namespace(self) -> str:
        return "callqa.asr"


def utterance_seconds(utt: Utterance) -> float:
    return (utt.end_ms - utt.start_ms) / 1000.0


def length_buckets(opts: AsrOptions, backend: str) -> list[float]:
    if opts.length_buckets_s:
        return list(opts.length_buckets_s)
    if backend == BACKEND_FASTER_WHISPER:
        first = opts.min_window_s - WINDOW_TAIL_FRAMES / 100
        return [first] + [b for b in (14.0, 20.0) if b > first + 1]
    return [4.0, 9.0, 16.0]


def batch_kwargs(opts: AsrOptions, backend: str) -> dict[str, Any]:
    """RunInference's batching: full batches when utterances queue up (the size does not ramp
    up from 1), at most ``max_batch_duration_s`` of waiting, and one batch queue per length
    bucket so an utterance is batched with others of similar length (less padding)."""
    if opts.max_batch_duration_s <= 0:  # batches within a bundle only (no state, no timer)
        return {"max_batch_size": opts.max_batch_size}
    return {
        "min_batch_size": opts.max_batch_size,
        "max_batch_size": opts.max_batch_size,
        "max_batch_duration_secs": opts.max_batch_duration_s,
        "length_fn": utterance_seconds,
        "bucket_boundaries": length_buckets(opts, backend),
    }


def model_handler(opts: AsrOptions) -> ModelHandler[Utterance, Transcript, Any]:
    """The handler for what ``opts.model_dir`` holds, after checking every knob against it."""
    kind = detect_model(opts.model_dir)
    validate_options(opts, kind)
    if kind.backend == BACKEND_FASTER_WHISPER:
        return FasterWhisperModelHandler(opts)
    from transforms.asr_transformers import TransformersAsrModelHandler

    return TransformersAsrModelHandler(opts, kind.family)


def transcribe_failures(failure: Any) -> Iterator[DeadLetter]:
    """RunInference's failed batch (``(utterances, (type, repr, traceback))``) → one dead letter
    per utterance: a batch mixes calls, and each call counts its own missing transcripts."""
    batch, (exc_type, message, _) = failure
    for utt in batch if isinstance(batch, list | tuple) else [batch]:
        yield dead_letter(
            STAGE,
            "asr_error",
            exc_type,
            str(message),
            call_id=utt.call_id,
            event_time_ms=utt.start_ms,
            size_bytes=len(utt.pcm),
        )


def at_event_time(record: Transcript | DeadLetter) -> TimestampedValue:
    """A transcript at its utterance's end, an ASR failure at its utterance's start.

    RunInference's batching stamps every batch at the end of the global window: downstream,
    such a transcript holds no watermark back, so a bounded run's end-of-input timer (which must
    come after the last transcript) fired while the transcripts were still on their way, and
    every call closed with none of them (issue 15)."""
    if isinstance(record, Transcript):
        return TimestampedValue(record, record.end_ms / 1000.0)
    return TimestampedValue(record, (record.event_time_ms or 0) / 1000.0)


class Transcribe(beam.PTransform):
    """``PCollection[Utterance]`` → ``transcripts`` (Transcript) and ``dead_letter``, both
    stamped with their utterance's event time again (``at_event_time``).

    RunInference batches utterances across calls (``max_batch_size``, and in streaming at most
    ``max_batch_duration_s`` of waiting) and loads the model once per worker process (once per
    machine with ``large_model``).
    """

    def __init__(self, opts: AsrOptions) -> None:
        super().__init__()
        self._opts = opts
        self._handler = model_handler(opts)  # checks the directory and knobs at build time

    def expand(self, utterances: beam.PCollection[Utterance]) -> dict[str, beam.PCollection]:
        main, other = (
            utterances | "RunInference" >> RunInference(self._handler).with_exception_handling()
        )
        return {
            "transcripts": main
            | "StampTranscripts" >> beam.Map(at_event_time).with_output_types(Transcript),
            "dead_letter": other.failed_inferences
            | "ToDeadLetter" >> beam.FlatMap(transcribe_failures)
            | "StampFailures" >> beam.Map(at_event_time).with_output_types(DeadLetter),
        }
