"""Job options (CLI) → one validated, frozen ``JobConfig``. No transform reads argv or env."""

from __future__ import annotations

import json
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from transforms.aggregate import AggregationConfig
from transforms.asr import WhisperOptions
from transforms.commit import CommitConfig
from transforms.kafka_source import KafkaSourceConfig
from transforms.segment import SegmentOptions

DEFAULT_TOPIC = "callqa.audio-chunks.v1"


class StreamingJobOptions(PipelineOptions):
    """Options of the streaming job (``callqa run``). Units are in the names."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # type: ignore[no-untyped-def]
        g = parser.add_argument_group("callqa")
        g.add_argument("--kafka_bootstrap_servers", default="127.0.0.1:19092")
        g.add_argument(
            "--kafka_topic", default=DEFAULT_TOPIC, help="audio-chunk topic (contract v1)"
        )
        g.add_argument(
            "--kafka_group_id", default="callqa", help="consumer group (committed offsets)"
        )
        g.add_argument(
            "--kafka_client_config",
            default="{}",
            help='kafka-python connection settings as JSON, e.g. \'{"security_protocol": '
            '"SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "u", ...}\'',
        )
        g.add_argument(
            "--kafka_start_from",
            default="earliest",
            choices=["earliest", "latest"],
            help="where to start when the group has no committed offset",
        )
        g.add_argument(
            "--bounded",
            action="store_true",
            help="read up to the end offsets seen at start, then finish (backfills)",
        )
        g.add_argument("--output_dir", default="out", help="warehouse root for Parquet tables")
        g.add_argument(
            "--checkpoint_dir",
            default=None,
            help="restart positions (default: <output_dir>/_checkpoints)",
        )
        g.add_argument("--commit_interval_s", type=float, default=5.0)
        g.add_argument(
            "--asr",
            default="off",
            help="off | embedded | a CTranslate2 Whisper model directory: segment speech and "
            "write transcripts",
        )
        g.add_argument("--asr_beam_size", type=int, default=5)
        g.add_argument("--inactivity_gap_s", type=float, default=30.0)
        g.add_argument("--live_interval_s", type=float, default=10.0, help="0: no live rows")
        g.add_argument("--allowed_lateness_s", type=float, default=300.0)
        g.add_argument("--correction_delay_s", type=float, default=2.0)
        g.add_argument("--max_out_of_orderness_s", type=float, default=2.0)
        g.add_argument("--idle_slack_s", type=float, default=1.0)
        g.add_argument("--poll_timeout_s", type=float, default=0.1)
        g.add_argument(
            "--audit_lateness",
            action="store_true",
            help="also count on-time chunks per 1 s window (tests, benchmarks)",
        )


@dataclass(frozen=True)
class JobConfig:
    source: KafkaSourceConfig | None  # None: the records come from elsewhere (batch job)
    aggregation: AggregationConfig
    output_dir: str
    streaming: bool
    audit_lateness: bool = False
    commit: CommitConfig | None = None  # None: no offset tracking (unit tests)
    asr: WhisperOptions | None = None  # None: no speech segmentation or transcripts
    segment: SegmentOptions = SegmentOptions()


def config_from_options(options: PipelineOptions) -> JobConfig:
    o = options.view_as(StreamingJobOptions)
    streaming = bool(options.view_as(StandardOptions).streaming)
    if o.bounded and streaming:
        raise ValueError("--bounded reads a fixed range and finishes: drop --streaming with it")
    if not o.bounded and not streaming:
        raise ValueError(
            "an unbounded Kafka read needs --streaming (or pass --bounded for a backfill)"
        )
    checkpoint_dir = o.checkpoint_dir or f"{o.output_dir.rstrip('/')}/_checkpoints"
    try:
        client_config = json.loads(o.kafka_client_config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--kafka_client_config is not JSON: {exc}") from exc
    if not isinstance(client_config, dict):
        raise ValueError("--kafka_client_config must be a JSON object")
    client = tuple(sorted(client_config.items()))
    asr = None
    if o.asr != "off":
        model_dir = o.asr
        if o.asr == "embedded":
            from beam_jobs.models import install_embedded_whisper

            model_dir = str(install_embedded_whisper())
        asr = WhisperOptions(model_dir=model_dir, beam_size=o.asr_beam_size)
    return JobConfig(
        source=KafkaSourceConfig(
            checkpoint_dir=checkpoint_dir,
            consumer_config=client,
            bootstrap_servers=o.kafka_bootstrap_servers,
            topic=o.kafka_topic,
            group_id=o.kafka_group_id,
            start_from=o.kafka_start_from,
            bounded=o.bounded,
            poll_timeout_s=o.poll_timeout_s,
            max_out_of_orderness_s=o.max_out_of_orderness_s,
            idle_slack_s=o.idle_slack_s,
        ),
        aggregation=AggregationConfig(
            inactivity_gap_s=o.inactivity_gap_s,
            live_interval_s=o.live_interval_s,
            allowed_lateness_s=o.allowed_lateness_s,
            correction_delay_s=o.correction_delay_s,
            marker_waits_for_watermark=o.bounded,
        ),
        output_dir=o.output_dir,
        streaming=streaming,
        audit_lateness=o.audit_lateness,
        commit=CommitConfig(
            bootstrap_servers=o.kafka_bootstrap_servers,
            group_id=o.kafka_group_id,
            checkpoint_dir=checkpoint_dir,
            commit_interval_s=o.commit_interval_s,
            consumer_config=client,
        ),
        asr=asr,
    )
