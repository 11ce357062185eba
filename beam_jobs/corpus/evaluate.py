"""``callqa eval MANIFEST``: the ASR stage's error rates on the evaluation corpus.

Every speech span of the manifest (a call's turns, a single utterance) becomes an
``Utterance`` cut from its item's audio in one condition, padded as SegmentSpeech pads, and the
job's own ``Transcribe`` stage (RunInference on Prism, the job's ASR options) transcribes them.
Each table row is one Prism run over one scenario and condition; its real-time factor is that
run's wall time less a one-utterance run's (Prism start-up and the model load), over the
row's audio. The error rate is CER for Mandarin, WER for English and MER for code-switched
text (``beam_jobs.report.asr_eval``: script, width, punctuation and numerals normalised).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from beam_jobs.report.asr_eval import UNITS, error_counts
from schemas.records import Transcript, Utterance
from transforms.asr.options import AsrOptions
from transforms.core.script import ZH_SCRIPTS

_PAD_S: Final = 0.2  # as SegmentSpeech pads an utterance
_HINTS: Final = {"zh": "zh", "zh-en": "zh", "en": "en"}
SCENARIO_UNITS: Final = {
    "zh": UNITS["zh"], "zh-en": UNITS["zh-en"], "terms": UNITS["zh-en"],
    "en-tts": UNITS["en"], "en-human": UNITS["en"],
}  # fmt: skip


class Row(NamedTuple):
    """One line of the table: a scenario in one condition, optionally with domain biasing."""

    name: str
    scenario: str
    condition: str
    biased: bool = False


#: The table's rows, in order (rows whose utterances the manifest lacks are left out).
ROWS: Final = (
    Row("clean zh", "zh", "clean"),
    Row("noisy zh, white 10 dB", "zh", "white-10dB"),
    Row("noisy zh, babble 10 dB", "zh", "babble-10dB"),
    Row("noisy zh, white 0 dB", "zh", "white-0dB"),
    Row("noisy zh, babble 0 dB", "zh", "babble-0dB"),
    Row("telephony zh (8 kHz mu-law)", "zh", "telephony"),
    Row("zh/en mixed", "zh-en", "clean"),
    Row("telephony zh/en mixed", "zh-en", "telephony"),
    Row("domain terms", "terms", "clean"),
    Row("domain terms, --asr_domain_terms", "terms", "clean", biased=True),
    Row("English TTS", "en-tts", "clean"),
    Row("telephony English TTS", "en-tts", "telephony"),
    Row("English human", "en-human", "clean"),
)


class Case(NamedTuple):
    """One utterance to score: its reference and where it comes from."""

    item_id: str
    scenario: str
    condition: str
    language: str
    voice: str
    reference: str
    utterance: Utterance


def cases(manifest: dict[str, Any], root: Path, scenario: str, condition: str,
          hints: bool = True) -> list[Case]:  # fmt: skip
    """The spans of ``scenario`` in a parsed ``manifest`` (audio paths relative to ``root``)
    cut from their audio in ``condition``, with the language hint a telephony system would set
    (``hints``) or none (identified per utterance)."""
    import soundfile as sf

    out: list[Case] = []
    for n, item in enumerate(manifest["items"]):
        if item["scenario"] != scenario or condition not in item["audio"]:
            continue
        data, rate = sf.read(str(root / item["audio"][condition]), dtype="int16", always_2d=True)
        for k, seg in enumerate(item["segments"]):
            x = data[:, seg["channel"]]
            a = max(0, int((seg["start_s"] - _PAD_S) * rate))
            b = min(len(x), int((seg["end_s"] + _PAD_S) * rate))
            start_ms = 1_800_000_000_000 + 1000 * (1000 * n + k)
            utt = Utterance(f"{item['id']}/{condition}", seg["role"], start_ms,
                            start_ms + 1000 * (b - a) // rate, int(rate),
                            np.ascontiguousarray(x[a:b]).astype("<i2").tobytes(),
                            _HINTS[item["language"]] if hints else None)  # fmt: skip
            out.append(Case(item["id"], scenario, condition, item["language"], seg["voice"],
                            seg["text"], utt))  # fmt: skip
    return out


def transcribe(opts: AsrOptions, utterances: Sequence[Utterance]) -> tuple[list[Transcript], float]:
    """The job's ``Transcribe`` stage on Prism over ``utterances``: transcripts and wall s."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs.runner import runner_options
    from transforms.asr.transcribe import Transcribe

    work = Path(tempfile.mkdtemp(prefix="callqa-eval-"))
    try:
        t0 = time.perf_counter()
        p = beam.Pipeline(options=PipelineOptions(runner_options([])))
        out = p | beam.Create(list(utterances), reshuffle=False) | Transcribe(opts)
        _ = (
            out["transcripts"]
            | "ToJson" >> beam.Map(lambda t: json.dumps(t._asdict(), ensure_ascii=False))
            | beam.io.WriteToText(str(work / "transcripts"), file_name_suffix=".jsonl")
        )
        p.run().wait_until_finish()
        wall_s = time.perf_counter() - t0
        transcripts = [
            _transcript(json.loads(line))
            for f in sorted(work.glob("transcripts*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines()
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return transcripts, wall_s


def _transcript(d: dict[str, Any]) -> Transcript:
    d["words"] = ()
    d["alternatives"] = tuple(d["alternatives"])
    return Transcript(**d)


def score(cases_: Sequence[Case], transcripts: Sequence[Transcript]) -> dict[str, Any]:
    """Pooled error rate of a row and each utterance's outcome (a missing transcript counts
    every reference token as an error)."""
    by_key = {(t.call_id, t.channel, t.start_ms): t for t in transcripts}
    errors = tokens = 0
    details = []
    for c in cases_:
        u = c.utterance
        t = by_key.get((u.call_id, u.channel, u.start_ms))
        hyp = t.text if t else ""
        e, n = error_counts(c.reference, hyp)
        errors, tokens = errors + e, tokens + n
        details.append({"item": c.item_id, "voice": c.voice, "reference": c.reference,
                        "hypothesis": hyp, "errors": e, "tokens": n,
                        "transcribed": t is not None})  # fmt: skip
    return {"errors": errors, "tokens": tokens, "error_rate": errors / max(1, tokens),
            "utterances": details}  # fmt: skip


def evaluate(manifest: Path, opts: AsrOptions, domain_terms: tuple[str, ...],
             rows: Sequence[Row] = ROWS, hints: bool = True,
             log: Any = print) -> dict[str, Any]:  # fmt: skip
    """Every row the manifest has utterances for: error rate, accuracy, RTF, per utterance."""
    import dataclasses

    parsed = json.loads(manifest.read_text(encoding="utf-8"))
    plan = [
        (row, cs)
        for row in rows
        if (cs := cases(parsed, manifest.parent, row.scenario, row.condition, hints))
    ]
    if not plan:
        raise ValueError(f"{manifest}: no utterances for any evaluation scenario")
    biased = dataclasses.replace(opts, domain_terms=opts.domain_terms + domain_terms)
    one = [plan[0][1][0].utterance]
    transcribe(opts, one)  # warm-up: the model files into the page cache
    _, overhead_s = transcribe(opts, one)
    log(f"eval: Prism start-up and model load {overhead_s:.1f} s (taken off each row's time)")
    results = []
    for row, cs in plan:
        transcripts, wall_s = transcribe(biased if row.biased else opts, [c.utterance for c in cs])
        audio_s = sum((c.utterance.end_ms - c.utterance.start_ms) / 1000 for c in cs)
        scored = score(cs, transcripts)
        rtf = max(wall_s - overhead_s, 0.0) / audio_s
        unit = SCENARIO_UNITS[row.scenario]
        results.append({**row._asdict(), "unit": unit, "audio_s": round(audio_s, 2),
                        "wall_s": round(wall_s, 2), "rtf": round(rtf, 3), **scored})  # fmt: skip
        log(f"eval: {row.name}: {len(cs)} utterances, {unit} {scored['error_rate']:.3f}, "
            f"RTF {rtf:.2f}")  # fmt: skip
    return {"manifest": str(manifest), "model": opts.model_dir, "beam_size": opts.beam_size,
            "min_window_s": opts.min_window_s, "language_hints": hints,
            "zh_script": opts.zh_script, "zh_prompt": opts.zh_prompt,
            "domain_terms_prompt": opts.domain_terms_prompt,
            "domain_terms_correction": opts.domain_terms_correction,
            "overhead_s": round(overhead_s, 2), "domain_terms": list(domain_terms),
            "rows": results}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    """The seed's table: scenario, utterances, error rate, accuracy = 1 - error, RTF."""
    lines = [f"{'scenario':<36}{'utts':>6}{'metric':>8}{'error':>8}{'accuracy':>10}{'RTF':>8}"]
    for r in result["rows"]:
        err = r["error_rate"]
        lines.append(f"{r['name']:<36}{len(r['utterances']):>6}{r['unit']:>8}{err:>8.3f}"
                     f"{max(0.0, 1 - err):>10.3f}{r['rtf']:>8.3f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    from beam_jobs.config import domain_terms as parse_terms
    from beam_jobs.config import resolve_asr_dir

    ap = argparse.ArgumentParser(prog="callqa eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("manifest", type=Path, help="manifest.json of `callqa corpus build`")
    ap.add_argument("--asr", default="embedded", help="embedded | a model directory")
    ap.add_argument("--asr_beam_size", type=int, default=AsrOptions("").beam_size)
    ap.add_argument("--asr_min_window_s", type=float, default=AsrOptions("").min_window_s)
    ap.add_argument("--asr_zh_script", choices=ZH_SCRIPTS, default="simplified")
    ap.add_argument("--language_hints", choices=("on", "off"), default="on",
                    help="off: no zh/en hint, the language is identified")  # fmt: skip
    ap.add_argument("--asr_zh_prompt", choices=("on", "off"), default="off")
    ap.add_argument("--asr_domain_terms_prompt", choices=("on", "off"), default="on")
    ap.add_argument("--asr_domain_terms_correction", choices=("on", "off"), default="on")
    ap.add_argument("--asr_domain_terms", default="",
                    help="the biased row's terms (default: manifest's): a,b, @file")  # fmt: skip
    ap.add_argument("--json", type=Path, help="write the results here (default: next to the "
                    "manifest, eval.json)")  # fmt: skip
    ap.add_argument("--row", action="append", default=[],
                    help="run only this table row (repeatable; default: every row)")  # fmt: skip
    args = ap.parse_args(argv)
    if not args.manifest.is_file():
        raise ValueError(f"{args.manifest}: no such manifest (build one: callqa corpus build)")
    opts = AsrOptions(model_dir=resolve_asr_dir(args.asr), beam_size=args.asr_beam_size,
                      zh_script=args.asr_zh_script, zh_prompt=args.asr_zh_prompt == "on",
                      min_window_s=args.asr_min_window_s, queues=1,
                      domain_terms_prompt=args.asr_domain_terms_prompt == "on",
                      domain_terms_correction=args.asr_domain_terms_correction == "on")  # fmt: skip
    terms = parse_terms(args.asr_domain_terms) if args.asr_domain_terms else tuple(
        json.loads(args.manifest.read_text(encoding="utf-8")).get("domain_terms", ())
    )  # fmt: skip
    unknown = set(args.row) - {r.name for r in ROWS}
    if unknown:
        raise ValueError(f"no such row {sorted(unknown)}: one of {[r.name for r in ROWS]}")
    rows = [r for r in ROWS if not args.row or r.name in args.row]
    result = evaluate(args.manifest, opts, terms, rows, hints=args.language_hints == "on")
    out = args.json or args.manifest.with_name("eval.json")
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print()
    print(table(result))
    print(
        f"\nmodel {opts.model_dir}, beam {opts.beam_size}, window {opts.min_window_s:g} s, "
        f"zh script {opts.zh_script}, zh prompt {args.asr_zh_prompt}, language hints "
        f"{args.language_hints}, terms prompt {args.asr_domain_terms_prompt} correction "
        f"{args.asr_domain_terms_correction}; CER for "
        f"zh, WER for en, MER for zh/en mixed; RTF: decode time / audio here. JSON: {out}"
    )
    return 0
