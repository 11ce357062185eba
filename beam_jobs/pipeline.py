"""Pipeline assembly: ``build_pipeline(p, cfg)`` wires the stages; ``run(argv)`` runs it.

Kafka ─ReadAudioChunks─► KafkaRecord ─DecodeAndValidate─► AudioChunk ─GroupChunks─► ChunkRun
  ─AggregateCalls (stateful, event time)─► CallRow (+ QA metrics, scorecard)
  ─ValidateCalls (great-expectations)─► WriteCalls─► calls/ (+ scorecard_answers/)
With --asr:
ChunkRun ─SegmentSpeech─► Utterance ─Transcribe─► Transcript ─AnalyzeTranscripts (PII, sentiment)
  ─ValidateTranscripts─► WriteTranscripts─► transcripts/ ─(durable)─► AggregateCalls (per call)
           │                └─PublishTranscripts─► Kafka transcripts topic
           └─ SegmentationDone (each flush's utterances) ─► AggregateCalls
every stage's failures ─► DeadLetter ─Flatten─► ValidateDeadLetters ─► dead_letters/
rows failing their table's expectations ─► QuarantinedRow ─ValidateQuarantine─WriteQuarantine─►
  quarantine/ (a call row is checked with its scorecard answers; quarantine records that fail
  their own suite are still written, marked)
offsets of durable rows ─► OffsetAck ─CommitOffsets─► checkpoints + group offsets
Each Write* is an Iceberg table's committer (a commit every --warehouse_commit_interval_s, the
delivery ledger in its snapshot), or with --warehouse=parquet a file per row.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import FlinkRunnerOptions, PipelineOptions

from beam_jobs.config import JobConfig, StreamingJobOptions, config_from_options
from beam_jobs.runner import (
    RunnerLost,
    Stopped,
    cancel_job,
    runner_options,
    stop_on_signals,
    wait_until_finish,
)
from schemas.records import CallRow, DeadLetter, KafkaRecord, QuarantineWithAck
from schemas.tables import CALLS, DEAD_LETTERS, QUARANTINE, TRANSCRIPTS, Table
from transforms.aggregate import AggregateCalls
from transforms.analyze import AnalyzeTranscripts
from transforms.asr.transcribe import Transcribe
from transforms.audit import AuditLateness
from transforms.core.lifecycle import INCOMPLETE_COUNTER
from transforms.decode import DecodeAndValidate, GroupChunks
from transforms.io.commit import CommitOffsets
from transforms.io.iceberg import ensure_tables
from transforms.io.iceberg_sink import CommitToIceberg
from transforms.io.kafka_client import quiet_connection_logs
from transforms.io.kafka_sink import PublishCallState, PublishTranscripts
from transforms.io.kafka_source import ReadAudioChunks
from transforms.io.parquet_sink import WriteTable
from transforms.segment import SegmentSpeech
from transforms.validate import ValidateRows, quarantined_transcript

_LOG = logging.getLogger(__name__)


def build_pipeline(
    p: beam.Pipeline,
    cfg: JobConfig,
    records: beam.PCollection[KafkaRecord] | None = None,
    source_dead_letters: beam.PCollection[DeadLetter] | None = None,
) -> None:
    """Wire every stage onto ``p``. ``records`` replaces the Kafka source (the batch job over
    recordings, tests); ``source_dead_letters`` are that source's rejects."""
    if records is None:
        assert cfg.source is not None, "a job without records needs a Kafka source"
        records = p | "ReadAudioChunks" >> ReadAudioChunks(cfg.source)
    decoded = records | "DecodeAndValidate" >> DecodeAndValidate()
    failures = [decoded.dead_letter]
    quarantined: list[beam.PCollection[QuarantineWithAck]] = []
    # the keyed stages take a channel's chunks of one source bundle as one element
    runs = decoded.chunks | "GroupChunks" >> GroupChunks()
    call_events: dict[str, beam.PCollection] = {"chunks": runs}
    if cfg.asr is not None:
        segmented = runs | "SegmentSpeech" >> SegmentSpeech(cfg.segment)
        transcribed = segmented.utterances | "Transcribe" >> Transcribe(cfg.asr)
        analyzed = transcribed["transcripts"] | "AnalyzeTranscripts" >> AnalyzeTranscripts(
            cfg.analyze
        )
        checked = analyzed["transcripts"] | "ValidateTranscripts" >> ValidateRows(
            TRANSCRIPTS, window_s=cfg.validate_window_s
        )
        quarantined.append(checked.quarantine)
        written = checked.valid | "WriteTranscripts" >> _write(TRANSCRIPTS, cfg, emit_written=True)
        asr_failures = (transcribed["dead_letter"], analyzed["dead_letter"]) | (
            "FlattenAsrFailures" >> beam.Flatten()
        )
        failures += [asr_failures, written.dead_letter]
        # A quarantined transcript will not come either: the call must not wait for it.
        held_back = checked.quarantine | "QuarantinedTranscripts" >> beam.Map(
            quarantined_transcript
        ).with_output_types(DeadLetter)
        call_events.update(
            transcripts=written.written,
            segmented=segmented.done,
            asr_failures=(asr_failures, held_back) | "FlattenMissingTranscripts" >> beam.Flatten(),
        )
        if cfg.transcripts_sink is not None:
            failures.append(
                analyzed["transcripts"]
                | "PublishTranscripts" >> PublishTranscripts(cfg.transcripts_sink)
            )
    aggregated = call_events | "AggregateCalls" >> AggregateCalls(cfg.aggregation)
    checked_calls = aggregated.rows | "ValidateCalls" >> ValidateRows(
        CALLS, window_s=cfg.validate_window_s, live_window_s=cfg.validate_live_window_s
    )
    quarantined.append(checked_calls.quarantine)
    to_table = checked_calls.valid
    if cfg.call_state_sink is not None:
        failures.append(
            checked_calls.valid
            | "CallStates" >> beam.Map(lambda r: r.row).with_output_types(CallRow)
            | "PublishCallState" >> PublishCallState(cfg.call_state_sink)
        )
        # live rows leave the warehouse for the topic
        to_table = checked_calls.valid | "FinalRows" >> beam.Filter(lambda r: r.row.is_final)
    calls = to_table | "WriteCalls" >> _write(CALLS, cfg)
    failures += [aggregated.dead_letter, calls.dead_letter]
    if source_dead_letters is not None:
        failures.append(source_dead_letters)
    checked_letters = (
        failures
        | "FlattenDeadLetters" >> beam.Flatten()
        | "ValidateDeadLetters" >> ValidateRows(DEAD_LETTERS, window_s=cfg.validate_window_s)
    )
    quarantined.append(checked_letters.quarantine)
    dead_letters = checked_letters.valid | "WriteDeadLetters" >> _write(DEAD_LETTERS, cfg)
    checked_held = (
        quarantined
        | "FlattenQuarantine" >> beam.Flatten()
        | "ValidateQuarantine" >> ValidateRows(QUARANTINE, window_s=cfg.validate_window_s)
    )
    held = checked_held.valid | "WriteQuarantine" >> _write(QUARANTINE, cfg)
    if cfg.commit is not None:
        _ = (
            (calls.acks, dead_letters.acks, held.acks)
            | "FlattenAcks" >> beam.Flatten()
            | "CommitOffsets" >> CommitOffsets(cfg.commit)
        )
    if cfg.audit_lateness:
        _ = decoded.chunks | "AuditLateness" >> AuditLateness(cfg.output_dir)


def _write(table: Table, cfg: JobConfig, emit_written: bool = False) -> beam.PTransform:
    """The sink of ``table``: Iceberg commits (the default), or Parquet files under the output
    directory (``--warehouse=parquet``). Both output ``acks``, ``dead_letter`` and ``written``."""
    if cfg.warehouse is None:
        return WriteTable(table, cfg.output_dir, emit_written=emit_written)
    return CommitToIceberg(table.name, cfg.warehouse, emit_written=emit_written)


def job_config(argv: Sequence[str]) -> JobConfig:
    return config_from_options(
        PipelineOptions(runner_options(list(argv))).view_as(StreamingJobOptions)
    )


def make_pipeline(argv: Sequence[str]) -> tuple[beam.Pipeline, JobConfig]:
    options = PipelineOptions(runner_options(list(argv)))
    cfg = config_from_options(options.view_as(StreamingJobOptions))
    p = beam.Pipeline(options=options)
    build_pipeline(p, cfg)
    return p, cfg


def preflight(cfg: JobConfig) -> None:
    """Fail before submitting, with one sentence, when the broker, topic or output is unusable."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    source = cfg.source
    if source is None:
        raise ValueError("preflight checks a Kafka job; this config has no Kafka source")

    try:
        # 10 s to reach the broker (kafka-python waits 30 s by default) unless the client
        # config says otherwise
        settings = {
            "request_timeout_ms": 10_000,
            "bootstrap_timeout_ms": 10_000,
            **dict(source.consumer_config),
        }
        admin = KafkaAdminClient(bootstrap_servers=source.bootstrap_servers.split(","), **settings)
    except (KafkaError, OSError, ValueError) as exc:
        # kafka-python reports a refused TLS certificate only as "Unable to bootstrap"
        refusal = _tls_refusal(source.bootstrap_servers, dict(source.consumer_config))
        if refusal is not None:
            raise RuntimeError(
                f"Kafka at {source.bootstrap_servers} presents a TLS certificate this client "
                f"does not trust ({refusal.verify_message}); {_tls_hint(refusal)}"
            ) from exc
        hint = (
            "check the credentials in --kafka_client_config"
            if source.consumer_config
            else "start it (callqa kafka start) or pass --kafka_bootstrap_servers"
        )
        raise RuntimeError(
            f"cannot reach Kafka at {source.bootstrap_servers} ({exc}); {hint}"
        ) from exc
    try:
        topics = admin.list_topics()
        needed = [(source.topic, "--kafka_topic")]
        if cfg.transcripts_sink is not None:
            needed.append((cfg.transcripts_sink.topic, "--transcripts_topic (or =off)"))
        for topic, flag in needed:
            if topic not in topics:
                raise RuntimeError(
                    f"Kafka topic {topic!r} does not exist on {source.bootstrap_servers}; "
                    f"create it (callqa kafka create-topic --topic {topic}) or pass {flag}"
                )
        if cfg.call_state_sink is not None:
            _ensure_call_state_topic(admin, cfg.call_state_sink.topic, source.topic, topics)
    finally:
        admin.close()
    for path in filter(None, (cfg.output_dir, source.checkpoint_dir)):
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(f"cannot create {path}: {exc.strerror}") from exc
    if cfg.warehouse is not None:
        try:  # made or evolved here, once, before the workers open it
            ensure_tables(cfg.warehouse.catalog)
        except Exception as exc:  # noqa: BLE001 - any catalog failure is a setup error
            raise RuntimeError(
                f"cannot open the Iceberg catalog {cfg.warehouse.catalog.uri} "
                f"({type(exc).__name__}: {exc}); check --iceberg_catalog_uri, "
                "--iceberg_warehouse and --iceberg_catalog_config"
            ) from exc


def call_state_topic_problem(topic: str, cleanup_policy: str) -> str | None:
    """Why an existing topic cannot hold call states, or None: it must be compacted (Kafka
    keeps each call's latest state; ``compact,delete`` also expires old calls)."""
    if "compact" in (p.strip() for p in cleanup_policy.split(",")):
        return None
    return (
        f"Kafka topic {topic!r} has cleanup.policy={cleanup_policy}; the call-state topic must "
        f"be compacted (kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
        "--add-config cleanup.policy=compact), or pass another --call_state_topic (created "
        "compacted when missing) or --call_state_topic=off"
    )


def _ensure_call_state_topic(admin: Any, topic: str, source_topic: str, topics: Any) -> None:
    """Create the call-state topic compacted when it is missing (with the source topic's
    partition count, replicated up to 3 times); refuse an existing one that is not compacted."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    if topic in topics:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})
        try:
            described = admin.describe_configs([resource], config_filter="all")
            policy = described["topic"][topic]["cleanup.policy"]["value"]
        except (KafkaError, KeyError) as exc:  # e.g. no DescribeConfigs permission
            logging.getLogger(__name__).warning(
                "cannot read the cleanup.policy of the call-state topic %s (%s); it must be "
                "compacted", topic, exc,
            )  # fmt: skip
            return
        problem = call_state_topic_problem(topic, policy)
        if problem is not None:
            raise RuntimeError(problem)
        return
    partitions = len(admin.describe_topics([source_topic])[0]["partitions"])
    replicas = min(3, len(admin.describe_cluster()["brokers"]))
    new = NewTopic(topic, partitions, replicas, topic_configs={"cleanup.policy": "compact"})
    try:
        admin.create_topics([new])
    except TopicAlreadyExistsError:  # another job created it meanwhile
        return
    except KafkaError as exc:
        raise RuntimeError(
            f"cannot create the call-state topic {topic!r} ({type(exc).__name__}: {exc}); "
            "create it compacted (callqa kafka create-topic --compact --topic "
            f"{topic}) or pass --call_state_topic=off"
        ) from exc
    sys.stderr.write(
        f"callqa: created the call-state topic {topic}: compacted, {partitions} partitions, "
        f"{replicas} replicas\n"
    )


def _tls_refusal(
    bootstrap_servers: str, client: dict[str, Any]
) -> ssl.SSLCertVerificationError | None:
    """Why the bootstrap servers' TLS certificates fail verification with the client's
    ``ssl_*`` settings (the context kafka-python builds from them), if they do."""
    if client.get("security_protocol") not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = bool(client.get("ssl_check_hostname", True))
    try:
        if client.get("ssl_cafile"):
            ctx.load_verify_locations(client["ssl_cafile"])
        else:
            ctx.load_default_certs()
        if client.get("ssl_crlfile"):
            ctx.load_verify_locations(client["ssl_crlfile"])
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    except OSError:  # an unreadable CA or CRL file (ssl.SSLError is an OSError)
        return None
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with (
                socket.create_connection((host.strip("[]"), int(port)), timeout=5) as sock,
                ctx.wrap_socket(sock, server_hostname=host.strip("[]")),
            ):
                pass
        except ssl.SSLCertVerificationError as exc:
            return exc
        except (OSError, ValueError):
            continue  # down, or not TLS: the caller's message covers it
    return None


def _tls_hint(refusal: ssl.SSLCertVerificationError) -> str:
    """What to do about a refused broker certificate (OpenSSL's X509_V_ERR_* codes)."""
    if refusal.verify_code in (9, 10):  # not yet valid, expired
        return "renew the broker's certificate (and check both machines' clocks)"
    if refusal.verify_code == 62:  # hostname mismatch
        return "connect by a name the certificate lists, or reissue it with this name"
    return "set ssl_cafile in --kafka_client_config to the CA that signed the broker's certificate"


def submit(argv: Sequence[str]) -> tuple[Any, JobConfig]:
    """Parse, check (``preflight``: it creates the call-state topic), build and start the job;
    returns its ``PipelineResult`` (running) and config. ``run``, the demo, the benchmarks and
    the tests start jobs here."""
    quiet_connection_logs()  # this process's own clients too (preflight; LOOPBACK workers)
    p, cfg = make_pipeline(argv)
    preflight(cfg)
    _LOG.info("callqa job: %s → %s", cfg.source, cfg.output_dir)
    return p.run(), cfg


def run(argv: Sequence[str]) -> int:
    """Parse, check, build, run until the job ends (bounded) or is cancelled (streaming); on
    SIGTERM or SIGINT cancel the job (on a Flink cluster too) and return 128 + the signal.
    Returns the exit status: 1 when a bounded run wrote a final row without all its
    transcripts (the log names the calls), or when the runner died under the job (its
    process was killed, say: a supervisor starts the job again)."""
    result, _ = submit(argv)
    try:
        with stop_on_signals():
            wait_until_finish(result)
    except RunnerLost as exc:
        sys.stderr.write(f"callqa: error: {exc}\n")  # one write: worker threads log too
        return 1
    except Stopped as stop:
        sys.stderr.write(f"callqa: {stop}: cancelling the job\n")
        flink = PipelineOptions(runner_options(list(argv))).view_as(FlinkRunnerOptions)
        cancel_job(result, flink.flink_master)
        return 128 + stop.signum
    incomplete = counter_total(result, INCOMPLETE_COUNTER)
    if incomplete:
        print(
            f"callqa: error: {incomplete} final call rows lack transcripts (their calls are "
            "named in the log above; the dead letters say why)",
            file=sys.stderr,
        )
        return 1
    return 0


def counter_total(result: Any, name: str) -> int:
    """A user counter's committed total over the job (0 when the runner reports none)."""
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    return int(sum(c.committed or 0 for c in counters))
