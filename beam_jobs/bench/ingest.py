"""``callqa bench ingest``: Kafka → decode → aggregate → Parquet throughput vs raw kafka-python.

Both are measured side by side in one run on the same topic and data:

* raw: a kafka-python consumer reading every record of the topic (no processing);
* job: the bounded job on Prism over the same records (source, decode + validation, per-call
  aggregation, Parquet, offset checkpoints), wall time from submission to the end;
* job, net: the same minus the fixed cost of a bounded run on an empty topic (Prism start,
  pipeline setup, final timers), i.e. the steady-state rate.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from beam_jobs import warehouse
from beam_jobs.demo.producer import (
    call_events,
    interleave,
    new_producer,
    send_events,
    synthetic_call,
)
from beam_jobs.pipeline import run
from beam_jobs.services.local import create_topic, default_broker, prism_binary, unique_name


def _raw_consume(bootstrap: str, topic: str) -> tuple[int, int, float]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, max_poll_records=1000
    )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    n = nbytes = 0
    t0 = time.perf_counter()
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=200).values():
            for rec in records:
                n += 1
                nbytes += len(rec.value or b"")
    elapsed = time.perf_counter() - t0
    consumer.close()
    return n, nbytes, elapsed


def _job(bootstrap: str, topic: str, out: Path) -> float:
    t0 = time.perf_counter()
    run(
        [
            f"--prism_location={prism_binary()}",
            "--bounded",
            f"--kafka_bootstrap_servers={bootstrap}",
            f"--kafka_topic={topic}",
            f"--kafka_group_id={topic}",
            f"--output_dir={out}",
            "--live_interval_s=0",
            "--commit_interval_s=0.5",
        ]
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="callqa bench ingest", description=__doc__)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--call-s", type=float, default=60.0)
    ap.add_argument("--bootstrap-servers", default=None, help="default: the local broker")
    args = ap.parse_args(argv)

    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker = default_broker()
        broker.start()
        bootstrap = broker.bootstrap_servers
    topic, empty = unique_name("callqa.bench"), unique_name("callqa.bench-empty")
    create_topic(bootstrap, topic, 4)
    create_topic(bootstrap, empty, 4)
    start_ms = int(time.time() * 1000) - int(args.call_s * 1000) - 60_000
    streams = [
        call_events(synthetic_call(f"b-{i:04d}", args.call_s, seed=i), start_ms + 250 * i)
        for i in range(args.calls)
    ]
    total = sum(len(s) for s in streams)
    print(f"producing {args.calls} calls x {args.call_s:.0f} s = {total} chunks to {topic} ...")
    producer = new_producer(bootstrap, linger_ms=20, batch_size=256 * 1024)
    send_events(producer, topic, interleave(streams), total=total)
    producer.close()

    work = Path(tempfile.mkdtemp(prefix="callqa-bench-"))
    try:
        n, nbytes, raw_s = _raw_consume(bootstrap, topic)
        fixed_s = _job(bootstrap, empty, work / "empty")
        job_s = _job(bootstrap, topic, work / "out")
        finals = len(warehouse.final_calls(work / "out"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert n == total, f"raw consumer read {n} of {total}"
    mb = nbytes / 1e6
    net_s = max(job_s - fixed_s, 1e-9)
    rows = [
        ("raw kafka-python consume", raw_s),
        ("job: Kafka→decode→aggregate→Parquet", job_s),
        ("job, net of fixed cost", net_s),
    ]
    print()
    print(f"{'path':<38}{'chunks':>8}{'s':>8}{'chunks/s':>10}{'MB/s':>8}{'vs raw':>8}")
    for name, secs in rows:
        print(f"{name:<38}{n:>8}{secs:>8.2f}{n / secs:>10.0f}{mb / secs:>8.1f}{raw_s / secs:>8.2f}")
    print(f"\nfixed cost of a bounded run (empty topic): {fixed_s:.2f} s; "
          f"final call rows: {finals}/{args.calls}; payload {mb:.0f} MB")  # fmt: skip
    return 0 if finals == args.calls else 1
