"""``callqa`` command line: run the job, produce audio, manage the local Kafka and Prism."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from schemas import audio


def _kafka(args: argparse.Namespace) -> int:
    from beam_jobs.services.local import create_topic, default_broker

    broker = default_broker()
    if args.action == "install":
        from beam_jobs.services.local import install_kafka

        print(f"Kafka jars in {install_kafka() / 'libs'}")
    elif args.action == "start":
        broker.start()
        print(f"Kafka {broker.bootstrap_servers} running (data: {broker.data_dir})")
    elif args.action == "stop":
        broker.stop()
        print("Kafka stopped")
    elif args.action == "status":
        up = broker.is_running()
        print(f"Kafka {broker.bootstrap_servers}: {'running' if up else 'stopped'}")
        return 0 if up else 3
    elif args.action == "create-topic":
        created = create_topic(args.bootstrap_servers, args.topic, args.partitions, args.compact)
        print(f"topic {args.topic}: {'created' if created else 'exists'}")
    return 0


def _warehouse(args: argparse.Namespace) -> int:
    from beam_jobs.config import catalog_config
    from beam_jobs.warehouse import duckdb_setup_sql, format_maintenance, iceberg_duckdb

    cfg = catalog_config(
        args.output_dir, args.catalog_uri, args.warehouse_location, args.catalog_config
    )
    if args.action == "duckdb":
        setup = duckdb_setup_sql(cfg)
        if args.c is None:
            print(setup)
            return 0
        con = iceberg_duckdb()
        con.execute(setup)
        rel = con.sql(args.c)
        if rel is not None:
            print("\t".join(rel.columns))
            for row in rel.fetchall():
                print("\t".join("" if v is None else str(v) for v in row))
        return 0
    from transforms.io.iceberg_maintenance import maintain

    reports = maintain(cfg, args.older_than_h * 3600, args.orphan_grace_min * 60, args.min_files)
    print(format_maintenance(reports))
    return 0


def _models(args: argparse.Namespace) -> int:
    from beam_jobs.services.models import install_embedded_whisper

    print(install_embedded_whisper())
    return 0


def _prism(args: argparse.Namespace) -> int:
    from beam_jobs.services.local import prism_binary

    print(prism_binary())
    return 0


def _produce(args: argparse.Namespace) -> int:
    from beam_jobs.demo.producer import (
        call_events,
        interleave,
        load_call,
        new_producer,
        send_events,
        synthetic_call,
    )

    calls = [load_call(path, f"{args.call_prefix}{i:04d}") for i, path in enumerate(args.files)]
    if not calls:
        calls = [
            synthetic_call(f"{args.call_prefix}{i:04d}", args.synthetic_s, seed=i)
            for i in range(args.calls)
        ]
    start_ms = int(time.time() * 1000)
    streams = [
        call_events(c, start_ms + int(i * args.stagger_s * 1000), args.chunk_ms, args.codec)
        for i, c in enumerate(calls)
    ]
    total = sum(len(s) for s in streams)
    sent = send_events(
        new_producer(args.bootstrap_servers),
        args.topic,
        interleave(streams),
        realtime=args.realtime,
        total=total,
        progress=not args.quiet,
    )
    print(f"sent {sent} chunks of {len(calls)} calls to {args.topic}")
    return 0


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser. ``passthrough=True``: it parses nothing and keeps every argument
    after the subcommand, in order and untouched (``--help``, a bare ``--``), in ``args.rest``
    for the parser that owns them (Beam's option parser, a benchmark's or the report's)."""

    def __init__(self, *args: Any, passthrough: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("add_help", not passthrough)  # --help belongs to the owner too
        super().__init__(*args, **kwargs)
        self.passthrough = passthrough

    def parse_known_args(  # type: ignore[override]  # typeshed overloads it on the namespace
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not self.passthrough:
            return super().parse_known_args(args, namespace)
        ns, _ = super().parse_known_args([], namespace)  # the defaults (func)
        ns.rest = list(args or ())
        return ns, []


def _wants_help(rest: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in rest)


def _run(args: argparse.Namespace) -> int:
    from beam_jobs.config import StreamingJobOptions, print_options_help
    from beam_jobs.pipeline import run

    if _wants_help(args.rest):
        print_options_help("callqa run", StreamingJobOptions)
        return 0
    return run(args.rest)


def _batch(args: argparse.Namespace) -> int:
    from beam_jobs.batch import BatchJobOptions, run_batch
    from beam_jobs.config import StreamingJobOptions, print_options_help

    if _wants_help(args.rest):
        print_options_help("callqa batch", BatchJobOptions, StreamingJobOptions)
        return 0
    return run_batch(args.rest)


def _report(args: argparse.Namespace) -> int:
    from beam_jobs.report.report import report_main

    return report_main(args.rest)


def _bench_ingest(args: argparse.Namespace) -> int:
    from beam_jobs.bench.ingest import main as bench_main

    return bench_main(args.rest)


def _bench_asr(args: argparse.Namespace) -> int:
    from beam_jobs.bench.asr import main as bench_asr_main

    return bench_asr_main([args.benchmark, *args.rest])  # its own subcommands: asr, latency


def _bench_batch(args: argparse.Namespace) -> int:
    from beam_jobs.bench.batch import main as bench_batch_main

    return bench_batch_main(args.rest)


def _bench_capacity(args: argparse.Namespace) -> int:
    from beam_jobs.bench.capacity import main as bench_capacity_main

    return bench_capacity_main(args.rest)


def _corpus(args: argparse.Namespace) -> int:
    from beam_jobs.corpus.build import main as corpus_main

    return corpus_main(args.rest)


def _eval(args: argparse.Namespace) -> int:
    from beam_jobs.corpus.evaluate import main as eval_main

    return eval_main(args.rest)


def _demo(args: argparse.Namespace) -> int:
    from beam_jobs.demo.demo import run_demo

    return run_demo(args.output_dir, args.asr)


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandParser(prog="callqa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("run", _run, "run the streaming job (its options: `callqa run --help`)"),
        ("batch", _batch, "the same stages over recordings on disk (--recordings=GLOB)"),
    ):
        sub.add_parser(name, passthrough=True, help=text).set_defaults(func=func)

    b = sub.add_parser("bench", help="benchmarks: `callqa bench <name> --help`")
    bench = b.add_subparsers(dest="benchmark", required=True)
    for name, func, text in (
        ("ingest", _bench_ingest, "Kafka → decode → aggregate → Parquet vs raw kafka-python"),
        ("asr", _bench_asr, "the ASR backend direct vs batched vs the Beam stage"),
        ("latency", _bench_asr, "end of utterance → transcript on Kafka"),
        ("batch", _bench_batch, "the batch job over a folder of recordings vs the ASR ceiling"),
        ("capacity", _bench_capacity, "how many live calls one node holds, vs the ASR ceiling"),
    ):
        bench.add_parser(name, passthrough=True, help=text).set_defaults(func=func)

    c = sub.add_parser("corpus", help="the evaluation corpus: `callqa corpus build --help`")
    corpus = c.add_subparsers(dest="corpus_command", required=True)
    corpus.add_parser(
        "build", passthrough=True, help="synthesize the zh/en evaluation corpus (cached)"
    ).set_defaults(func=_corpus)
    sub.add_parser(
        "eval", passthrough=True, help="ASR error rates per scenario over a corpus manifest"
    ).set_defaults(func=_eval)

    sub.add_parser(
        "report", passthrough=True, help="HTML report + JSON summary of a date range (--from, --to)"
    ).set_defaults(func=_report)

    k = sub.add_parser("kafka", help="a local single-node Kafka 4.4 (installed from Maven)")
    k.add_argument("action", choices=["install", "start", "stop", "status", "create-topic"])
    k.add_argument("--bootstrap-servers", default="127.0.0.1:19092")
    k.add_argument("--topic", default="callqa.audio-chunks.v1")
    k.add_argument("--partitions", type=int, default=4)
    k.add_argument("--compact", action="store_true", help="cleanup.policy=compact (call state)")
    k.set_defaults(func=_kafka)

    w = sub.add_parser("warehouse", help="the Iceberg tables: `duckdb` to query, `maintain`")
    w.add_argument("action", choices=["duckdb", "maintain"])
    w.add_argument("--output_dir", default="out", help="the job's --output_dir")
    w.add_argument("--catalog_uri", default="", help="as the job's --iceberg_catalog_uri")
    w.add_argument("--warehouse_location", default="", help="as the job's --iceberg_warehouse")
    w.add_argument("--catalog_config", default="{}", help="as --iceberg_catalog_config")
    w.add_argument("-c", default=None, help="duckdb: run this SQL (views: calls, transcripts, …)")
    w.add_argument("--older_than_h", type=float, default=168, help="maintain: expire snapshots")
    w.add_argument("--orphan_grace_min", type=float, default=60, help="maintain: spare newer")
    w.add_argument("--min_files", type=int, default=2, help="maintain: compact days with this many")
    w.set_defaults(func=_warehouse)

    m = sub.add_parser("models", help="ASR models: `install` prepares the embedded one")
    m.add_argument("action", choices=["install"])
    m.set_defaults(func=_models)

    pr = sub.add_parser("prism", help="build (first time) and print the Prism runner binary")
    pr.set_defaults(func=_prism)

    p = sub.add_parser("produce", help="replay audio files as contract-v1 chunk events")
    p.add_argument("files", nargs="*", help="wav/flac/mp3; mono → mixed, stereo → agent+customer")
    p.add_argument("--bootstrap-servers", default="127.0.0.1:19092")
    p.add_argument("--topic", default="callqa.audio-chunks.v1")
    p.add_argument("--chunk-ms", type=int, default=audio.DEFAULT_CHUNK_MS)
    p.add_argument("--codec", choices=audio.CODECS, default=audio.CODEC_PCM_S16LE)
    p.add_argument("--realtime", action="store_true", help="pace chunks at capture time")
    p.add_argument("--stagger-s", type=float, default=0.5, help="start offset between calls")
    p.add_argument("--call-prefix", default="call-")
    p.add_argument("--calls", type=int, default=4, help="synthetic calls when no files given")
    p.add_argument("--synthetic-s", type=float, default=20.0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_produce)

    d = sub.add_parser("demo", help="Kafka + Prism + producer + streaming job, end to end")
    d.add_argument("--output-dir", default="out/demo")
    d.add_argument(
        "--asr", default="embedded", help="embedded | a model directory (see callqa run --asr)"
    )
    d.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``callqa``: parse the subcommand, run it; 2 after one sentence on stderr when it refuses
    (a bad setup: RuntimeError or ValueError), argparse's usage errors likewise."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # Beam warns about optional GCP clients
        handler.addFilter(lambda r: "apitools not found" not in r.getMessage())
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("apache_beam.utils.subprocess_server").setLevel(logging.ERROR)
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return int(args.func(args))
    except (RuntimeError, ValueError) as exc:
        print(f"callqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
