"""The ASR stage's failure path: a batch that fails in RunInference becomes one ``asr_error``
dead letter per utterance (the batch mixes calls; each call counts its own)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import Utterance
from transforms.asr import transcribe_failures


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
