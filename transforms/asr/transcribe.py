"""The ASR stage: ``Utterance`` → ``Transcript`` through Beam's ``RunInference`` (batching
across calls, one model per worker process, inference metrics and a failure output come with
it). ``model_handler`` picks the backend from what the model directory holds
(``transforms.asr.options.detect_model``): ``transforms.asr.whisper`` (faster-whisper) or
``transforms.asr.hf`` (transformers).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from typing import Any, Final

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.transforms.combiners import CountCombineFn
from apache_beam.transforms.userstate import CombiningValueStateSpec
from apache_beam.transforms.window import TimestampedValue

from schemas.records import DeadLetter, Transcript, Utterance
from transforms.asr.hf import TransformersAsrModelHandler
from transforms.asr.options import (
    ASR_STAGE,
    BACKEND_FASTER_WHISPER,
    AsrOptions,
    asr_dead_letter,
    detect_model,
    validate_options,
)
from transforms.asr.whisper import FasterWhisperModelHandler, available_cpus, resolve_device

STAGE: Final = ASR_STAGE


def model_handler(opts: AsrOptions) -> ModelHandler[Utterance, Transcript | DeadLetter, Any]:
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
        Metrics.counter("callqa.asr", "utterances_failed").inc()
        yield asr_dead_letter(utt, exc_type, str(message))


class SplitFailuresFn(beam.DoFn):
    """The handlers' outputs: transcripts, and dead letters for utterances that failed alone
    (``isolating_failures``)."""

    def __init__(self) -> None:
        self._failed = Metrics.counter("callqa.asr", "utterances_failed")

    def process(self, item: Transcript | DeadLetter) -> Iterator[Any]:
        if isinstance(item, DeadLetter):
            self._failed.inc()
            yield beam.pvalue.TaggedOutput("dead_letter", item)
        else:
            yield item


def resolve_queues(opts: AsrOptions) -> AsrOptions:
    """``opts`` with ``queues`` decided (0: automatic): one per CPU for faster-whisper on a CPU,
    else one. Decided where the pipeline is built, so a job built on a machine without the
    workers' GPU should pass ``--asr_queues`` (one per GPU)."""
    if opts.queues:
        return opts
    kind = detect_model(opts.model_dir)
    on_cpu = kind.backend == BACKEND_FASTER_WHISPER and resolve_device(opts)[0] == "cpu"
    return dataclasses.replace(opts, queues=available_cpus() if on_cpu else 1)


def asr_queue(utt: Utterance, queues: int) -> tuple[int, Utterance]:
    """The queue an utterance waits in: a stable hash of the utterance (call, channel,
    start), so that the queues share the load even with few calls."""
    key = f"{utt.call_id}/{utt.channel}/{utt.start_ms}".encode()
    return zlib.crc32(key) % queues, utt


class QueueForAsrFn(beam.DoFn):
    """Hands each queue's utterances to the ASR in the same bundle (``RunInference`` batches
    within a bundle, see ``batch_kwargs``).

    The state is what matters here: a keyed stage runs at most one bundle per key at a time,
    and the runner's next bundle takes everything the key gathered meanwhile (Prism: all
    pending elements of every key not in flight). So while the model decodes one batch, the
    utterances cut meanwhile queue and go together as the next batch, as an inference
    server's dynamic batching does, and the segmenter upstream never waits for the model: fused
    into the segmenter's bundle, one 2 s decode held up every channel that bundle touched.
    ``QUEUED`` is declared, never written: a state spec is what makes the runner key the
    stage, and writing it per utterance only cost a state request."""

    QUEUED = CombiningValueStateSpec("queued", VarIntCoder(), CountCombineFn())

    def __init__(self) -> None:
        self._queued = Metrics.counter("callqa.asr", "utterances_queued")

    def process(
        self,
        element: tuple[int, Utterance],
        queued: Any = beam.DoFn.StateParam(QUEUED),  # noqa: ARG002 - declared for the keying
    ) -> Iterator[Utterance]:
        self._queued.inc()
        yield element[1]


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

    Utterances first wait in ``opts.queues`` keyed queues (``QueueForAsrFn``): a batch takes
    what queued while the one before it ran. RunInference batches them across calls
    (``max_batch_size``, and with ``max_batch_duration_s`` at most that long a wait) and loads
    the model once per worker process (once per machine with ``large_model``).
    """

    def __init__(self, opts: AsrOptions) -> None:
        super().__init__()
        self._opts = resolve_queues(opts)
        self._handler = model_handler(self._opts)  # checks the directory and knobs at build time

    def expand(self, utterances: beam.PCollection[Utterance]) -> dict[str, beam.PCollection]:
        queued = (
            utterances
            | "KeyByQueue"
            >> beam.Map(asr_queue, self._opts.queues).with_output_types(tuple[int, Utterance])
            | "Queue" >> beam.ParDo(QueueForAsrFn()).with_output_types(Utterance)
        )
        main, other = (
            queued | "RunInference" >> RunInference(self._handler).with_exception_handling()
        )
        split = main | "SplitFailures" >> beam.ParDo(SplitFailuresFn()).with_outputs(
            "dead_letter", main="transcripts"
        )
        failed = (
            split.dead_letter,
            other.failed_inferences | "ToDeadLetter" >> beam.FlatMap(transcribe_failures),
        ) | "Failures" >> beam.Flatten()
        return {
            "transcripts": split.transcripts
            | "StampTranscripts" >> beam.Map(at_event_time).with_output_types(Transcript),
            "dead_letter": failed
            | "StampFailures" >> beam.Map(at_event_time).with_output_types(DeadLetter),
        }
