"""Pipeline assembly: ``build_pipeline(p, cfg)`` wires the stages; ``run(argv)`` runs it.

Kafka ─ReadAudioChunks─► KafkaRecord ─DecodeAndValidate─► AudioChunk
  ─AggregateCalls (stateful, event time)─► CallRow ─WriteCalls─► calls/ Parquet
every stage's failures ─► DeadLetter ─Flatten─► WriteDeadLetters ─► dead_letters/ Parquet
offsets of durable rows ─► OffsetAck ─CommitOffsets─► checkpoints + group offsets
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.config import JobConfig, StreamingJobOptions, config_from_options
from beam_jobs.runner import runner_options
from schemas.records import KafkaRecord
from schemas.tables import CALLS, DEAD_LETTERS
from transforms.aggregate import AggregateCalls
from transforms.audit import AuditLateness
from transforms.commit import CommitOffsets
from transforms.decode import DecodeAndValidate
from transforms.kafka_source import ReadAudioChunks
from transforms.parquet_sink import WriteTable

_LOG = logging.getLogger(__name__)


def build_pipeline(
    p: beam.Pipeline, cfg: JobConfig, records: beam.PCollection[KafkaRecord] | None = None
) -> None:
    """Wire every stage onto ``p``. ``records`` replaces the Kafka source in unit tests."""
    if records is None:
        records = p | "ReadAudioChunks" >> ReadAudioChunks(cfg.source)
    decoded = records | "DecodeAndValidate" >> DecodeAndValidate()
    aggregated = decoded.chunks | "AggregateCalls" >> AggregateCalls(cfg.aggregation)
    call_acks = aggregated.rows | "WriteCalls" >> WriteTable(CALLS, cfg.output_dir)
    dead_letter_acks = (
        (decoded.dead_letter, aggregated.dead_letter)
        | "FlattenDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteTable(DEAD_LETTERS, cfg.output_dir)
    )
    if cfg.commit is not None:
        _ = (
            (call_acks, dead_letter_acks)
            | "FlattenAcks" >> beam.Flatten()
            | "CommitOffsets" >> CommitOffsets(cfg.commit)
        )
    if cfg.audit_lateness:
        _ = decoded.chunks | "AuditLateness" >> AuditLateness(cfg.output_dir)


def make_pipeline(argv: Sequence[str]) -> tuple[beam.Pipeline, JobConfig]:
    options = PipelineOptions(runner_options(list(argv)))
    cfg = config_from_options(options.view_as(StreamingJobOptions))
    p = beam.Pipeline(options=options)
    build_pipeline(p, cfg)
    return p, cfg


def run(argv: Sequence[str]) -> None:
    """Parse, build, run until the job ends (bounded) or is cancelled (streaming)."""
    p, cfg = make_pipeline(argv)
    _LOG.info("callqa job: topic %s → %s", cfg.source.topic, cfg.output_dir)
    result = p.run()
    result.wait_until_finish()
