"""``callqa demo``: the whole streaming path on embedded defaults, end to end.

Starts the local Kafka broker (installing it on first use), builds Prism if needed, starts the
streaming job on Prism, then produces synthetic two-party calls *while the job runs* (real-time
pace, interleaved, plus a few malformed events), waits until every call has its final row,
cancels the job and prints a summary read back from the Parquet output with DuckDB.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import time
from pathlib import Path

from beam_jobs import warehouse
from beam_jobs.pipeline import make_pipeline
from beam_jobs.producer import call_events, interleave, new_producer, send_events, synthetic_call
from beam_jobs.services import create_topic, default_broker, prism_binary

DEMO_MALFORMED = (
    ("bad-version", [("schema_version", b"99")], b"\x00\x00"),
    (
        "bad-codec",
        [("schema_version", b"1"), ("channel", b"agent"), ("seq", b"0"), ("codec", b"opus"),
         ("sample_rate_hz", b"16000"), ("channels", b"1")],
        b"\x00\x00",
    ),
    (
        "truncated",
        [("schema_version", b"1"), ("channel", b"agent"), ("seq", b"0"), ("codec", b"pcm_s16le"),
         ("sample_rate_hz", b"16000"), ("channels", b"1")],
        b"\x00\x00\x00",
    ),
)  # fmt: skip


def run_demo(output_dir: str, n_calls: int, call_s: float) -> int:
    out = Path(output_dir)
    if out.exists():
        shutil.rmtree(out)
    broker = default_broker()
    print(f"[1/5] Kafka: starting on {broker.bootstrap_servers} (first run installs it) ...")
    broker.start()
    print(f"[2/5] Prism: {prism_binary()}")
    topic = f"callqa.demo.{int(time.time())}"
    create_topic(broker.bootstrap_servers, topic, partitions=4)
    argv = [
        "--streaming",
        f"--kafka_bootstrap_servers={broker.bootstrap_servers}",
        f"--kafka_topic={topic}",
        f"--kafka_group_id={topic}",
        f"--output_dir={out}",
        "--inactivity_gap_s=10",
        "--live_interval_s=4",
    ]
    pipeline, _ = make_pipeline(argv)
    print(f"[3/5] streaming job on Prism: {topic} → {out}")
    result = pipeline.run()
    try:
        start_ms = int(time.time() * 1000) + 1000
        calls = [synthetic_call(f"demo-{i:02d}", call_s, seed=i) for i in range(n_calls)]
        streams = [call_events(c, start_ms + i * 700) for i, c in enumerate(calls)]
        total = sum(len(s) for s in streams)
        print(f"[4/5] producing {n_calls} calls ({total} chunks) at real-time pace ...")
        producer = new_producer(broker.bootstrap_servers)
        for key, headers, value in DEMO_MALFORMED:
            producer.send(topic, key=key.encode(), value=value, headers=headers)
        t_produced = time.time()
        send_events(producer, topic, interleave(streams), realtime=True, total=total)
        t_produced = time.time()
        rows = warehouse.wait_for_final_calls(out, [c.call_id for c in calls], timeout_s=120)
        t_final = time.time()
    finally:
        # Cancelling tears the in-process SDK worker down mid-bundle: it prints the aborted
        # bundles' tracebacks to stderr. They are expected; keep them off the demo's output.
        for name in ("apache_beam.runners.worker", "PrismRunner"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        with contextlib.redirect_stderr(io.StringIO()):
            result.cancel()
            time.sleep(2)
    print(f"[5/5] job cancelled; last final row {t_final - t_produced:.1f} s after the last chunk")
    print()
    print(
        f"{'call':<10}{'ver':>4}{'reason':>13}{'agent_s':>9}{'cust_s':>8}{'chunks':>8}{'gaps':>6}"
    )
    for r in rows.values():
        print(
            f"{r['call_id']:<10}{r['version']:>4}{r['close_reason']:>13}"
            f"{r['agent_audio_s']:>9.1f}{r['customer_audio_s']:>8.1f}"
            f"{r['chunk_count']:>8}{r['missing_seq_count']:>6}"
        )
    live = sum(1 for r in warehouse.all_call_rows(out) if not r["is_final"])
    dls = warehouse.dead_letters(out)
    print()
    print(f"final calls: {len(rows)}/{n_calls}; live rows: {live}; dead letters: {len(dls)}")
    for dl in dls:
        print(f"  dead letter [{dl['stage']}/{dl['reason']}] key={dl['call_id']}: {dl['message']}")
    print()
    print("Kafka keeps running for the next run: `callqa kafka stop` stops it.")
    print("Query it:  duckdb -c \"SELECT * FROM read_parquet('" + str(out) +
          "/calls/*/*.parquet', hive_partitioning=true) WHERE is_final\"")  # fmt: skip
    return 0 if len(rows) == n_calls else 1
