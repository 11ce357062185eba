"""The faster-whisper ASR backend: a CTranslate2 Whisper model (the embedded default on a fresh
machine), int8 on CPU, float16 on CUDA.

A RunInference batch is cut by encoder window (``whisper_window_frames``: the utterance plus
1 s of silence, at least ``min_window_s``), and each window size is one encoder pass and one
``generate`` call; repetitive outputs are decoded again with sampling. With word timestamps
each utterance goes through faster-whisper's own ``transcribe`` instead.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from schemas.records import DeadLetter, Transcript, Utterance, Word
from transforms.asr.options import (
    BACKEND_FASTER_WHISPER,
    AsrOptions,
    batch_kwargs,
    detect_model,
    forced_language,
    isolating_failures,
    make_transcript,
    utterance_samples,
    validate_options,
    whisper_prompt,
)
from transforms.core.script import HAN_RANGES

#: faster-whisper's default: retried at these temperatures when a decode looks degenerate.
WHISPER_FALLBACK_TEMPERATURES: Final = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: A language outside ``language_candidates`` is reported only when it is at least this many
#: times as likely as the likeliest expected one (docs/design.md, "Language id").
OTHER_LANGUAGE_MIN_ODDS: Final = 20.0
#: Re-decodes of a repetitive output (sampled, batched), after the first deterministic one.
WHISPER_RETRY_TEMPERATURES: Final = (0.4, 0.8)
RETRY_SEED: Final = 0


def available_cpus() -> int:
    """CPUs this process may run on. CTranslate2's own default oversubscribes small machines:
    inside a Beam worker (whose runner threads also want CPU) it decoded 2.3x slower on 2
    cores than with one thread per CPU."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decoders(opts: AsrOptions) -> tuple[int, int]:
    """(decodes at once, threads per decode): one model worker per ASR queue, the CPUs shared
    among them. Two one-thread decodes side by side beat one two-thread decode of batches of one
    on 2 cores: 5.15 vs 4.14 s of speech per s quiet, 3.28 vs 2.16 with a busy core beside
    them (docs/benchmarks.md): a decode's threads wait on each other, and on a busy
    machine on the slowest of them."""
    workers = max(1, opts.queues)
    return workers, opts.cpu_threads or max(1, available_cpus() // workers)


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


def default_length_buckets_s(opts: AsrOptions) -> list[float]:
    """RunInference's default length buckets for this backend: the utterances that share the
    minimum window go together, then the longer ones in two more buckets."""
    first = opts.min_window_s - WINDOW_TAIL_FRAMES / 100
    return [first] + [b for b in (14.0, 20.0) if b > first + 1]


def _same_window_buckets(windows: Sequence[int], max_size: int) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w, []).append(i)
    return [g[k : k + max_size] for g in groups.values() for k in range(0, len(g), max_size)]


def pick_language(ranked: Sequence[tuple[str, float]], candidates: Sequence[str]) -> str:
    """Whisper's ranked ``("<|xx|>", p)`` list → a language code. The expected languages win
    unless another one is ``OTHER_LANGUAGE_MIN_ODDS`` times as likely as the likeliest of
    them: noise makes Whisper's language id wander (at 10 dB SNR it called English "fi", at
    p 0.67 on one CPU and above 0.8 on another), while clear speech in another language
    outweighs the expected ones by 25-470 times."""
    codes = [(token[2:-2], p) for token, p in ranked]
    top, p_top = codes[0]
    if not candidates or top in candidates:
        return top
    expected = max((c for c in codes if c[0] in candidates), key=lambda c: c[1], default=None)
    if expected is None or p_top >= OTHER_LANGUAGE_MIN_ODDS * expected[1]:
        return top
    return expected[0]


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / max(1, len(zlib.compress(data)))


def keeps_retry(before: str, retry: str) -> bool:
    """Whether a sampled retry replaces the output it redoes: unless it loops worse (a retry
    can: an output 4x the reference's length, once in CI)."""
    return compression_ratio(retry) <= compression_ratio(before)


#: A unit of up to ``_LOOP_UNIT`` tokens said ``_LOOP_TIMES`` times in a row is a loop.
_LOOP_UNIT: Final = 4
_LOOP_TIMES: Final = 5
_NUMERALS: Final = frozenset("零〇一二三四五六七八九十幺两")
_LOOP_TOKENS: Final = re.compile(f"[{HAN_RANGES}]|[^\\W_]+")


def repeats_a_unit(text: str) -> bool:
    """Whether the same unit (1 to ``_LOOP_UNIT`` Han characters or words, not a number read
    out) comes ``_LOOP_TIMES`` times in a row, punctuation aside: a loop too short for the gzip
    test ("水,水,水,水,水,水,水,水,水" compresses only 2.3×)."""
    tokens = _LOOP_TOKENS.findall(text.lower())
    for n in range(1, _LOOP_UNIT + 1):
        for i in range(len(tokens) - n * _LOOP_TIMES + 1):
            unit = tokens[i : i + n]
            if all(t.isdigit() or t in _NUMERALS for t in unit):
                continue  # a number read out: "1 1 1 1 1", 一一一一一
            if all(tokens[i + k * n : i + (k + 1) * n] == unit for k in range(1, _LOOP_TIMES)):
                return True
    return False


def is_repetitive(text: str) -> bool:
    """A decoding loop: Whisper's test (gzip compresses the text more than 2.4×), or a short
    unit repeated (``repeats_a_unit``)."""
    return compression_ratio(text) > 2.4 or repeats_a_unit(text)


class FasterWhisperModelHandler(ModelHandler[Utterance, Transcript | DeadLetter, Any]):
    """``Utterance`` → ``Transcript`` with a CTranslate2 Whisper model (faster-whisper); an
    utterance that fails alone → its ``DeadLetter`` (``isolating_failures``)."""

    def __init__(self, opts: AsrOptions) -> None:
        super().__init__()
        self._opts = opts
        self._retries = Metrics.counter("callqa.asr", "whisper_retry_decodes")

    def load_model(self) -> Any:
        import ctranslate2
        from faster_whisper import WhisperModel

        validate_options(self._opts, detect_model(self._opts.model_dir))
        device, compute = resolve_device(self._opts)
        workers, threads = decoders(self._opts)
        ctranslate2.set_random_seed(RETRY_SEED)  # the sampled retries repeat run to run
        return WhisperModel(
            self._opts.model_dir,
            device=device,
            compute_type=compute,
            cpu_threads=threads,
            num_workers=workers,
        )

    def run_inference(
        self,
        batch: Sequence[Utterance],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Transcript | DeadLetter]:
        return isolating_failures(batch, lambda utts: self._run_batch(utts, model))

    def _run_batch(self, batch: Sequence[Utterance], model: Any) -> Iterator[Transcript]:
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
        tokenizers = {
            lang: Tokenizer(model.hf_tokenizer, True, task="transcribe", language=lang)
            for lang in set(languages)
        }
        prompt_ids = {
            lang: model.hf_tokenizer.encode(text, add_special_tokens=False).ids
            for lang in set(languages)
            if (text := whisper_prompt(o, lang))
        }
        prompts = []
        for lang in languages:
            tok = tokenizers[lang]
            prompt = prompt_ids.get(lang)
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
                texts = texts_of(r)
                if keeps_retry(decoded[i][0], texts[0]):
                    decoded[i] = texts
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
            initial_prompt=whisper_prompt(o, forced_language(o, utt) or "").strip() or None,
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
        return batch_kwargs(self._opts, default_length_buckets_s(self._opts))

    def get_metrics_namespace(self) -> str:
        return "callqa.asr"
