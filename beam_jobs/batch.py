"""``callqa batch``: the same stages over historic recordings on disk (no Kafka).

    recordings ─ReadRecordings─► KafkaRecord ─DecodeAndValidate─► … ─► calls/, dead_letters/
                                         (with --asr: ─SegmentSpeech─Transcribe─► transcripts/)

Call id = the file's stem; event time of its first sample = the file's modification time
minus its duration. Unreadable files become ``unreadable_audio`` dead letters.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_jobs.config import (
    JobConfig,
    StreamingJobOptions,
    aggregation_config,
    asr_options,
    segment_options,
)
from beam_jobs.pipeline import build_pipeline
from beam_jobs.runner import runner_options
from schemas import audio
from transforms.analyze import AnalyzeOptions
from transforms.recordings import ReadRecordings, RecordingsConfig


class BatchJobOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # type: ignore[no-untyped-def]
        g = parser.add_argument_group("callqa batch")
        g.add_argument("--recordings", action="append", default=[],
                       help="audio file or glob (wav/flac/mp3); repeat for more")  # fmt: skip
        g.add_argument("--chunk_ms", type=int, default=audio.DEFAULT_CHUNK_MS)
        # --output_dir and --inactivity_gap_s are the streaming job's options (shared).


def batch_config(options: PipelineOptions) -> tuple[list[str], RecordingsConfig, JobConfig]:
    o = options.view_as(BatchJobOptions)
    shared = options.view_as(StreamingJobOptions)
    if options.view_as(StandardOptions).streaming:
        raise ValueError("the batch job reads files once: drop --streaming")
    paths = sorted({p for pattern in o.recordings for p in glob.glob(pattern)} | {
        p for p in o.recordings if not glob.has_magic(p)
    })  # fmt: skip
    if not paths:
        raise ValueError("no recordings: pass --recordings=FILE_OR_GLOB (wav, flac, mp3)")
    asr = asr_options(shared)  # --asr and friends, as for the streaming job
    job = JobConfig(
        source=None,
        # no live rows for historic calls
        aggregation=aggregation_config(shared, asr, bounded=True, live_interval_s=0),
        output_dir=shared.output_dir,
        streaming=False,
        asr=asr,
        segment=segment_options(shared, bounded=True),
        analyze=AnalyzeOptions(redact_pii=shared.redact_pii == "on"),
    )
    return paths, RecordingsConfig(chunk_ms=o.chunk_ms), job


def run_batch(argv: Sequence[str]) -> int:
    """Parse, build, run to the end; returns the number of recordings."""
    options = PipelineOptions(runner_options(list(argv)))
    paths, rec_cfg, cfg = batch_config(options)
    with beam.Pipeline(options=options) as p:
        read = p | "ReadRecordings" >> ReadRecordings(paths, rec_cfg)
        build_pipeline(p, cfg, records=read.records, source_dead_letters=read.dead_letter)
    return len(paths)
