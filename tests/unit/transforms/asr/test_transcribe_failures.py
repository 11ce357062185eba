"""The ASR stage's outputs: a batch that fails in RunInference becomes one ``asr_error`` dead
letter per utterance (the batch mixes calls; each call counts its own); a poison utterance that
makes the backend raise is retried alone and is the only dead letter of its batch; transcripts
and dead letters are stamped with their utterance's event time again."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from schemas.records import DeadLetter, Transcript, Utterance
from transforms.asr.options import isolating_failures
from transforms.asr.transcribe import SplitFailuresFn, at_event_time, transcribe_failures


class _Model:
    """Shared models must be weak-referenceable (Beam's multi_process_shared)."""


class FailingHandler(ModelHandler[Utterance, Any, Any]):
    """A fake model whose every batch fails (unit test only)."""

    def load_model(self) -> _Model:
        return _Model()

    def run_inference(
        self, batch: Sequence[Utterance], model: Any, inference_args: Any = None
    ) -> Iterable[Any]:
        raise RuntimeError("CUDA out of memory")

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 3, "max_batch_size": 3}


def test_a_failed_batch_is_one_dead_letter_per_utterance() -> None:
    utts = [Utterance(f"c{i % 2}", "agent", 1000 * i, 1000 * i + 500, 16000, b"\0\0" * 8, None)
            for i in range(3)]  # fmt: skip
    p = beam.Pipeline(runner=FnApiRunner())
    _, other = p | beam.Create(utts) | RunInference(FailingHandler()).with_exception_handling()
    letters = other.failed_inferences | beam.FlatMap(transcribe_failures)
    assert_that(
        letters | beam.Map(lambda d: (d.call_id, d.event_time_ms, d.reason, d.error_type)),
        equal_to([("c0", 0, "asr_error", "RuntimeError"), ("c1", 1000, "asr_error",
                   "RuntimeError"), ("c0", 2000, "asr_error", "RuntimeError")]),
    )  # fmt: skip
    assert_that(
        letters | "Messages" >> beam.Map(lambda d: "out of memory" in d.message),
        equal_to([True] * 3),
        label="messages",
    )
    p.run().wait_until_finish()


class EchoHandler(ModelHandler[Utterance, Any, Any]):
    """A fake model that 'transcribes' each utterance as its channel name (unit test only)."""

    def load_model(self) -> _Model:
        return _Model()

    def run_inference(
        self, batch: Sequence[Utterance], model: Any, inference_args: Any = None
    ) -> Iterable[Any]:
        return [transcript_of(u) for u in batch]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 3, "max_batch_size": 3}


def transcript_of(u: Utterance) -> Transcript:
    return Transcript(u.call_id, u.channel, u.start_ms, u.end_ms, u.channel, "en", "en", -0.1,
                      "m", "fake", (), (), -20.0, 0.5, 0)  # fmt: skip


def test_transcripts_and_failures_are_stamped_at_their_utterance_again() -> None:
    """RunInference emits its batches at the end of the global window; a bounded run's
    end-of-input deadline then came before the transcripts (issue 15: empty call rows)."""
    utts = [Utterance("c", "agent", 1000 * i, 1000 * i + 500, 16000, b"\0\0" * 8, None)
            for i in range(1, 4)]  # fmt: skip
    p = beam.Pipeline(runner=FnApiRunner())
    stamped = p | beam.Create(utts) | beam.Map(lambda u: TimestampedValue(u, u.start_ms / 1000))
    ok = stamped | "Ok" >> RunInference(EchoHandler())
    _, bad = stamped | "Bad" >> RunInference(FailingHandler()).with_exception_handling()

    def when(x: Any, ts: Any = beam.DoFn.TimestampParam) -> tuple[int, int]:
        return x.start_ms if isinstance(x, Transcript) else x.event_time_ms, ts.micros // 1000

    raw = ok | "Raw" >> beam.Map(when)
    assert_that(raw | beam.Map(lambda w: w[1] > 10**12), equal_to([True] * 3), label="raw")
    fixed = ok | "Stamp" >> beam.Map(at_event_time) | "When" >> beam.Map(when)
    assert_that(fixed, equal_to([(1000, 1500), (2000, 2500), (3000, 3500)]), label="fixed")
    letters = (
        bad.failed_inferences
        | beam.FlatMap(transcribe_failures)
        | "StampLetters" >> beam.Map(at_event_time)
        | "LetterWhen" >> beam.Map(when)
    )
    assert_that(letters, equal_to([(1000, 1000), (2000, 2000), (3000, 3000)]), label="letters")
    p.run().wait_until_finish()


def test_a_call_waits_in_one_queue_and_calls_spread_over_the_queues() -> None:
    from transforms.asr.transcribe import asr_queue

    utts = [Utterance(f"call-{i}", "agent", 0, 500, 16000, b"", None) for i in range(64)]
    queues = {asr_queue(u, 4)[0] for u in utts}
    assert queues == {0, 1, 2, 3}
    assert all(asr_queue(u, 4) == asr_queue(u, 4) for u in utts)
    assert all(asr_queue(u, 1)[0] == 0 for u in utts)


POISON = "poison"


def _decode(batch: Sequence[Utterance]) -> list[Transcript]:
    """A fake backend that fails any batch holding the poison utterance (unit test only)."""
    if any(u.call_id == POISON for u in batch):
        raise ValueError("cannot reshape array of size 0")
    return [transcript_of(u) for u in batch]


class PoisonHandler(EchoHandler):
    def run_inference(
        self, batch: Sequence[Utterance], model: Any, inference_args: Any = None
    ) -> Iterable[Any]:
        return isolating_failures(batch, _decode)


def test_a_poison_utterance_is_one_dead_letter_and_its_batch_is_still_transcribed() -> None:
    utts = [Utterance(cid, "agent", 1000 * i, 1000 * i + 500, 16000, b"\0\0" * 8, None)
            for i, cid in enumerate(["c0", POISON, "c2"])]  # fmt: skip
    out = isolating_failures(utts, _decode)
    assert [(type(o).__name__, o.call_id) for o in out] == [
        ("Transcript", "c0"), ("DeadLetter", POISON), ("Transcript", "c2")
    ]  # fmt: skip
    letter = out[1]
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.reason, letter.error_type) == ("transcribe", "asr_error",
                                                                "ValueError")  # fmt: skip
    # alone, a failing utterance raises: RunInference's failure output takes it
    with pytest.raises(ValueError):
        isolating_failures(utts[1:2], _decode)
    # through RunInference and the stage's split: two transcripts, one dead letter
    p = beam.Pipeline(runner=FnApiRunner())
    main, _ = p | beam.Create(utts) | RunInference(PoisonHandler()).with_exception_handling()
    split = main | beam.ParDo(SplitFailuresFn()).with_outputs("dead_letter", main="transcripts")
    assert_that(split.transcripts | beam.Map(lambda t: t.call_id), equal_to(["c0", "c2"]))
    assert_that(split.dead_letter | beam.Map(lambda d: (d.call_id, d.reason)),
                equal_to([(POISON, "asr_error")]), label="letters")  # fmt: skip
    p.run().wait_until_finish()
