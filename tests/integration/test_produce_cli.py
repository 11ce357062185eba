"""`callqa produce` against the real broker: wav/flac/mp3 files, stereo split into agent and
customer, several calls interleaved; every record it writes passes the contract validation."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from kafka import KafkaConsumer, TopicPartition

from beam_jobs.cli import main
from schemas.records import KafkaRecord
from transforms.decode import parse_record

pytestmark = pytest.mark.integration


def _read_all(bootstrap: str, topic: str) -> list[KafkaRecord]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    out: list[KafkaRecord] = []
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(
                KafkaRecord(
                    r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers), r.timestamp
                )  # fmt: skip
                for r in records
            )
    consumer.close()
    return out


def test_produce_files_as_interleaved_contract_events(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    t = np.arange(16000 * 2) / 16000  # 2 s
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 500 * t)], 1)
    files = []
    for fmt in ("wav", "flac", "mp3"):
        path = tmp_path / f"call.{fmt}"
        sf.write(path, stereo.astype(np.float32), 16000)
        files.append(str(path))
    mono = tmp_path / "mono.wav"
    sf.write(mono, stereo[:, 0].astype(np.float32), 8000)  # 4 s at 8 kHz, mono → mixed
    files.append(str(mono))

    rc = main(["produce", *files, "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
               "--chunk-ms", "200", "--call-prefix", "f-", "--quiet"])  # fmt: skip
    assert rc == 0

    records = _read_all(kafka_bootstrap, topic)
    chunks = [parse_record(r) for r in records]  # raises on any contract violation
    by_call = collections.defaultdict(list)
    for c in chunks:
        by_call[c.call_id].append(c)
    assert sorted(by_call) == ["f-0000", "f-0001", "f-0002", "f-0003"]
    for cid in ("f-0000", "f-0001"):  # wav, flac: exact 2 s per channel
        chans = collections.Counter(c.channel for c in by_call[cid])
        assert chans == {"agent": 10, "customer": 10}
        secs = sum(c.num_samples for c in by_call[cid] if c.channel == "agent") / 16000
        assert secs == pytest.approx(2.0)
    assert {c.channel for c in by_call["f-0002"]} == {"agent", "customer"}  # mp3 (padded)
    mixed = by_call["f-0003"]
    assert {c.channel for c in mixed} == {"mixed"} and mixed[0].sample_rate_hz == 8000
    assert sum(c.num_samples for c in mixed) == 8000 * 4
    for calls in by_call.values():
        assert sum(c.end_of_call for c in calls) == 1
        last = max(calls, key=lambda c: c.offset)
        assert last.end_of_call, "the end-of-call marker must be the call's last record"
    # interleaved: the partition stream mixes calls rather than sending them one after another
    order = [c.call_id for c in sorted(chunks, key=lambda c: c.event_time_ms)]
    assert len({tuple(order[i : i + 2]) for i in range(len(order) - 1)}) > 4
