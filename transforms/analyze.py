"""``AnalyzeTranscripts``: ``Transcript`` → ``Transcript`` with PII redacted and sentiment set,
before anything is written or published (``transforms.core.text_analytics`` does the work).

Outputs ``transcripts`` and ``dead_letter`` (stage ``analyze``, reason ``analyze_error``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas.records import DeadLetter, Transcript, dead_letter

STAGE: Final = "analyze"
_NS: Final = "callqa.analyze"
_DIGIT: Final = re.compile(r"[0-9０-９零〇一二三四五六七八九幺]")
REDACTED_WORD: Final = "[REDACTED]"


@dataclass(frozen=True)
class AnalyzeOptions:
    redact_pii: bool = True  # phone, Chinese ID, bank card and e-mail spans → placeholders
    # With redact_pii, a digit run this long that no validator accepts is "[NUMBER]" (0: off):
    # ASR damages spoken IDs and cards, which then fail their checksums but are still PII.
    # 9 keeps dates (8 digits), times and amounts; order numbers that long are redacted.
    redact_numbers_min_digits: int = 9


def analyze_transcript(t: Transcript, opts: AnalyzeOptions) -> Transcript:
    """Redact ``t`` (text, n-best, and the digit-bearing words when anything was redacted) and
    score its sentiment on the redacted text."""
    from transforms.core.text_analytics import redact, sentiment

    text, alternatives, words, count = t.text, t.alternatives, t.words, 0
    if opts.redact_pii:
        text, count = redact(t.text, opts.redact_numbers_min_digits)
        redacted_alts = [redact(a, opts.redact_numbers_min_digits) for a in t.alternatives]
        alternatives = tuple(a for a, _ in redacted_alts)
        count += sum(n for _, n in redacted_alts)
        if count:  # word timings stay; the digits they spelled do not
            words = tuple(
                w._replace(text=REDACTED_WORD) if _DIGIT.search(w.text) else w for w in t.words
            )
    return t._replace(
        text=text,
        alternatives=alternatives,
        words=words,
        pii_redactions=count,
        sentiment=sentiment(text),
    )


class AnalyzeTranscriptFn(beam.DoFn):
    """``Transcript`` → redacted, scored ``Transcript``. Metrics: ``pii_redactions``."""

    def __init__(self, opts: AnalyzeOptions) -> None:
        self._opts = opts
        self.redactions = Metrics.counter(_NS, "pii_redactions")
        self.analyzed = Metrics.counter(_NS, "transcripts_analyzed")

    def setup(self) -> None:
        from transforms.core.text_analytics import redact, sentiment

        # Load the lexicons and models once per worker, not on the first transcript.
        redact("warm up 13800138000")
        sentiment("warm up 预热")

    def process(self, t: Transcript) -> Any:
        out = analyze_transcript(t, self._opts)
        self.redactions.inc(out.pii_redactions)
        self.analyzed.inc()
        yield out


def analyze_failure(failure: Any) -> DeadLetter:
    """``with_exception_handling``'s ``(transcript, (type, message, traceback))`` → a letter."""
    t, (exc_type, message, _) = failure
    return dead_letter(
        STAGE,
        "analyze_error",
        exc_type,
        str(message),
        call_id=t.call_id,
        event_time_ms=t.start_ms,
        size_bytes=len(t.text.encode()),
    )


class AnalyzeTranscripts(beam.PTransform):
    """``PCollection[Transcript]`` → ``{"transcripts": ..., "dead_letter": ...}``."""

    def __init__(self, opts: AnalyzeOptions) -> None:
        super().__init__()
        self._opts = opts

    def expand(self, transcripts: beam.PCollection[Transcript]) -> dict[str, beam.PCollection]:
        good, bad = transcripts | "Analyze" >> beam.ParDo(
            AnalyzeTranscriptFn(self._opts)
        ).with_output_types(Transcript).with_exception_handling(use_subprocess=False)
        return {
            "transcripts": good,
            "dead_letter": bad
            | "ToDeadLetter" >> beam.Map(analyze_failure).with_output_types(DeadLetter),
        }
