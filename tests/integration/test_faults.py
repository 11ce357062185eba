"""Faults on the real components: the broker killed (SIGKILL, as in a crash) mid-stream while
the streaming job (with ASR and live transcripts) runs, then started again on the same port.

The job keeps running through the outage without a human: the source defers its reads and
holds the watermark, the committer keeps its checkpoint files and skips the group commit, the
live-transcript sink holds its bundle and sends again. Counted afterwards: every produced call
has exactly one final row with all its chunks (0 lost, 0 duplicated), none closed early and
corrected, no dead letter; every transcript in the warehouse reached the live topic at least
once, those made during the outage after it; the log has a line per client per outage, not a
traceback per attempt. The ASR runs one queue, two utterances at a time, so that transcripts
are still being made when the broker dies.

``test_broker_outage`` runs a 20 s outage in the default run; the 2-minute one is marked
``soak`` (``pytest -m soak tests/integration/test_faults.py``)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewPartitions

from beam_jobs import warehouse
from beam_jobs.bench.capacity import start_job, stop_job
from beam_jobs.demo.producer import (
    synthetic_call,
)
from beam_jobs.services.local import KafkaBroker, create_topic, free_port, unique_name
from tests.integration.harness import (
    assert_each_call_once,
    call_ids_on,
    job_args,
    produce_calls,
)
from tests.integration.test_transcripts_job import spoken_call
from transforms.io.commit import read_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own (the session's is shared and must stay up)."""
    broker = KafkaBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _live_records(
    bootstrap: str, topic: str, idle_s: float = 5.0, first_only: bool = False
) -> list[dict]:
    """Every record of ``topic``, read until none came for ``idle_s`` (``first_only``: until
    the first batch of records)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    got: list[dict] = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            for records in consumer.poll(timeout_ms=100).values():
                got.extend(json.loads(r.value) for r in records)
                last = time.monotonic()
            if first_only and got:
                break
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize(
    "outage_s", [20.0, pytest.param(120.0, marks=pytest.mark.soak)], ids=["20s", "2min"]
)
def test_broker_outage(
    own_broker: KafkaBroker, prism_location: str, tmp_path: Path, outage_s: float
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic, live = unique_name("callqa-fault"), unique_name("callqa-fault-live")
    create_topic(bootstrap, topic, partitions=4)
    create_topic(bootstrap, live, partitions=2)
    out, log = tmp_path / "out", tmp_path / "job.log"
    calls = [spoken_call(f"outage-{i}", tmp_path) for i in range(8)]
    argv = job_args(
        bootstrap, topic, out, prism_location,
        "--asr=embedded", "--asr_queues=1", "--asr_max_batch_size=2",
        f"--transcripts_topic={live}", "--live_interval_s=0",
        "--inactivity_gap_s=3", "--allowed_lateness_s=1", "--commit_interval_s=0.5",
    )  # fmt: skip
    expected: dict[str, int] = {}

    def produce(batch: list, start_ms: int, realtime: bool) -> None:
        expected.update(produce_calls(bootstrap, topic, batch, start_ms, 500, realtime))

    job = start_job(argv, log)
    try:
        # Six recorded calls at once (a backlog): their twelve utterances queue for the ASR
        # (one queue, two at a time), so once the first transcript is out, more are still
        # being made, and wait to be published, while the broker is away.
        produce(calls[:6], int(time.time() * 1000) - 15_000, realtime=False)
        assert _live_records(bootstrap, live, idle_s=120, first_only=True), log.read_text()[-3000:]
        own_broker.stop(kill=True)  # gone at once, as in a crash
        stopped_at, stopped_wall_ms = time.monotonic(), int(time.time() * 1000)
        time.sleep(outage_s)
        assert job.poll() is None, f"the job stopped in the outage:\n{log.read_text()[-3000:]}"
        own_broker.start()
        restarted_after_s = time.monotonic() - stopped_at
        back_wall_ms = int(time.time() * 1000)
        produce(calls[6:], int(time.time() * 1000) + 1000, realtime=True)
        rows = warehouse.wait_for_final_calls(out, expected, timeout_s=180)
        assert job.poll() is None, log.read_text()[-3000:]
        stored = [(t["call_id"], t["channel"], t["start_ms"]) for t in warehouse.transcripts(out)]
        records = _live_records(bootstrap, live)
    finally:
        stop_job(job)

    text = log.read_text()
    assert set(rows) == set(expected)
    assert_each_call_once(out, expected, text)
    # The watermark held in the outage: no call closed early and was corrected later.
    assert all(r["version"] == 1 for r in warehouse.final_calls(out))
    assert warehouse.dead_letters(out) == [], warehouse.dead_letters(out)
    # At least once on the live topic: every stored transcript, none that was not stored.
    assert len(stored) >= 2 * len(calls)
    published = {(e["call_id"], e["channel"], e["start_ms"]) for e in records}
    assert published == set(stored), (published ^ set(stored), len(records))
    # Transcripts made while the broker was away were held and sent once it was back.
    held = [e for e in records if stopped_wall_ms <= e["emitted_at_ms"] < back_wall_ms]
    print("emitted, s after the stop:", sorted((e["emitted_at_ms"] - stopped_wall_ms) / 1000
                                               for e in records), "back at",
          (back_wall_ms - stopped_wall_ms) / 1000)  # fmt: skip
    # The outage is in the log, once per client, not once per reconnect attempt.
    lines = re.findall(r"^(?:WARNING|ERROR) (?:kafka|transforms\.io)\S*: .*$", text, re.M)
    print(f"outage {restarted_after_s:.0f} s: {len(records)} live records for {len(stored)} "
          f"transcripts, {len(held)} made in the outage; the job's Kafka log lines:", *lines,
          sep="\n")  # fmt: skip
    assert held, "no transcript was made while the broker was away: the outage came too late"
    assert 1 <= len(lines) <= 12, text[-5000:]
    assert "Traceback" not in text, text[-5000:]


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs for the job's output, so that the test can fill it (needs root)."""
    mount = tmp_path / "volume"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_output_disk(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path, small_volume: Path
) -> None:
    """The output volume fills up mid-stream: the job waits (nothing acknowledged that is not
    on disk), says so once, and writes everything once space returns: 0 lost, 0 duplicated."""
    out, log = small_volume / "out", tmp_path / "job.log"
    argv = job_args(kafka_bootstrap, topic, out, prism_location, "--inactivity_gap_s=3",
                    "--live_interval_s=0", "--allowed_lateness_s=1",
                    "--commit_interval_s=0.5")  # fmt: skip
    expected: dict[str, int] = {}

    def produce(first: int) -> None:
        calls = [synthetic_call(f"disk-{first + i}", 3.0, seed=first + i) for i in range(4)]
        start_ms = int(time.time() * 1000) + 1000
        expected.update(produce_calls(kafka_bootstrap, topic, calls, start_ms, 300))

    job = start_job(argv, log)
    filler = small_volume / "filler"
    try:
        produce(0)
        warehouse.wait_for_final_calls(out, list(expected), timeout_s=120)
        # fill the volume to the last byte
        with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
        produce(4)
        time.sleep(10)  # the new calls are due while the disk is full
        assert job.poll() is None, log.read_text()[-3000:]
        while_full = {r["call_id"] for r in warehouse.final_calls(out)}
        filler.unlink()
        rows = warehouse.wait_for_final_calls(out, list(expected), timeout_s=120)
        assert job.poll() is None, log.read_text()[-3000:]
    finally:
        stop_job(job)

    text = log.read_text()
    assert while_full <= {f"disk-{i}" for i in range(4)}, while_full  # nothing new written
    assert set(rows) == set(expected)
    assert_each_call_once(out, expected, text)
    assert re.search(r"writing the output: cannot write \(OSError: .*No space left", text), text
    assert "writing the output: writing again after" in text
    assert "Traceback" not in text, text[-5000:]


def _leader_epochs(bootstrap: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return {p["partition_index"]: p["leader_epoch"] for p in described["partitions"]}


def test_broker_restart_and_added_partitions(
    own_broker: KafkaBroker, prism_location: str, tmp_path: Path
) -> None:
    """The broker is restarted (its partitions get a new leader epoch) and, with the job still
    running, the topic grows from 2 to 4 partitions: calls keyed onto the new partitions come
    out once each, none late, and the new partitions' offsets are checkpointed."""
    bootstrap = own_broker.bootstrap_servers
    topic = unique_name("callqa-grow")
    create_topic(bootstrap, topic, partitions=2)
    out, log = tmp_path / "out", tmp_path / "job.log"
    argv = job_args(bootstrap, topic, out, prism_location, "--inactivity_gap_s=3",
                    "--live_interval_s=0", "--allowed_lateness_s=1",
                    "--commit_interval_s=0.5")  # fmt: skip
    expected: dict[str, int] = {}

    def produce(ids: list[str]) -> None:
        calls = [synthetic_call(cid, 3.0, seed=i) for i, cid in enumerate(ids)]
        start_ms = int(time.time() * 1000) + 1000
        expected.update(produce_calls(bootstrap, topic, calls, start_ms, 300))

    job = start_job(argv, log)
    try:
        produce([f"before-{i}" for i in range(4)])
        warehouse.wait_for_final_calls(out, list(expected), timeout_s=120)
        epochs = _leader_epochs(bootstrap, topic)
        own_broker.stop()
        own_broker.start()
        assert all(e > epochs[p] for p, e in _leader_epochs(bootstrap, topic).items())
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.create_partitions({topic: NewPartitions(total_count=4)})
        finally:
            admin.close()
        # keyed onto the new partitions 2 and 3 (the producer sees four partitions)
        produce(call_ids_on(2, 2, "grown") + call_ids_on(3, 2, "grown"))
        rows = warehouse.wait_for_final_calls(out, list(expected), timeout_s=120)
        # the new partitions' offsets are acknowledged once their calls expire
        frontiers = _wait_for_frontiers(out / "_checkpoints", topic, (2, 3), timeout_s=60)
        assert job.poll() is None, log.read_text()[-3000:]
    finally:
        stop_job(job)

    text = log.read_text()
    assert set(rows) == set(expected)
    assert_each_call_once(out, expected, text)
    assert all(r["version"] == 1 for r in warehouse.final_calls(out))  # none was late
    assert warehouse.dead_letters(out) == []
    assert "partitions [2, 3] were added; reading them from offsets [0, 0]" in text, text[-3000:]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in (2, 3)])
    finally:
        consumer.close()
    assert frontiers == {tp.partition: end for tp, end in ends.items()}


def _wait_for_frontiers(
    checkpoints: Path, topic: str, partitions: tuple[int, ...], timeout_s: float
) -> dict[int, int]:
    """The checkpointed frontier of each partition once every one has moved off 0."""
    deadline = time.monotonic() + timeout_s
    while True:
        cps = {p: read_checkpoint(str(checkpoints), topic, topic, p) for p in partitions}
        frontiers = {p: cp.frontier for p, cp in cps.items() if cp is not None}
        if len(frontiers) == len(partitions) and min(frontiers.values()) > 0:
            return frontiers
        assert time.monotonic() < deadline, f"checkpoints not advanced: {cps}"
        time.sleep(0.5)
