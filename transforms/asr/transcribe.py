"""The ASR stage: ``Utterance`` → ``Transcript`` through Beam's ``RunInference`` (batching
across calls, one model per worker process, inference metrics and a failure output come with
it). ``model_handler`` picks the backend from what the model directory holds
(``transforms.asr.options.detect_model``): ``transforms.asr.whisper`` (faster-whisper) or
``transforms.asr.hf`` (transformers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.transforms.window import TimestampedValue

from schemas.records import DeadLetter, Transcript, Utterance, dead_letter
from transforms.asr.hf import TransformersAsrModelHandler
from transforms.asr.options import (
    BACKEND_FASTER_WHISPER,
    AsrOptions,
    detect_model,
    validate_options,
)
from transforms.asr.whisper import FasterWhisperModelHandler

STAGE: Final = "transcribe"


def model_handler(opts: AsrOptions) -> ModelHandler[Utterance, Transcript, Any]:
    """The handler for what ``opts.model_dir`` holds, after checking every knob against it."""
    kind = detect_model(opts.model_dir)
    validate_options(opts, kind)
    if kind.backend == BACKEND_FASTER_WHISPER:
        return FasterWhisperModelHandler(opts)
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
