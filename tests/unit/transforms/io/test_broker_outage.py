"""Riding out broker outages, with fake clients: ``BrokerWait`` retries transient Kafka errors
and logs once per outage; the live-transcript sink sends lost records again, in order; a
refused record is a dead letter; kafka-python's per-attempt warnings show once per burst.
The real broker stopped mid-stream: ``tests/integration/test_faults.py``."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from apache_beam.transforms.window import GlobalWindow
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from schemas.records import Transcript
from transforms.io import kafka_client
from transforms.io.kafka_client import BrokerWait, is_transient
from transforms.io.kafka_sink import PublishRecordsFn, TranscriptSinkConfig


def test_transient_errors_are_retried_until_the_broker_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise KafkaTimeoutError("Unable to bootstrap")
        return "ok"

    wait = BrokerWait("test client", initial_s=0.001, max_backoff_s=0.002)
    with caplog.at_level(logging.WARNING, logger="transforms.io.outage"):
        assert wait.call(flaky) == "ok"
    assert len(calls) == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one when the outage starts, one when it ends
    assert "test client: Kafka unreachable (KafkaTimeoutError" in lines[0]
    assert "reachable again" in lines[1] and not wait.in_outage


def test_errors_the_broker_cannot_cure_are_raised_at_once() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise MessageSizeTooLargeError("too big")

    with pytest.raises(MessageSizeTooLargeError):
        BrokerWait("test", initial_s=0.001).call(refused)
    assert len(calls) == 1
    assert is_transient(KafkaTimeoutError()) and not is_transient(MessageSizeTooLargeError())
    assert not is_transient(ValueError("not Kafka's"))


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self._error = error

    def get(self, timeout: float) -> None:
        if self._error is not None:
            raise self._error


class _Producer:
    """Loses the sends numbered in ``lost`` (a transient error), refuses texts marked "huge"."""

    def __init__(self, lost: frozenset[int] = frozenset()) -> None:
        self.lost = lost
        self.sent: list[str] = []

    def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> _Future:
        text = value.decode()
        if "huge" in text:
            raise MessageSizeTooLargeError("record too large")
        self.sent.append(text)
        if len(self.sent) - 1 in self.lost:
            return _Future(KafkaTimeoutError("expired while the broker was away"))
        return _Future(None)

    def flush(self, timeout: float) -> None:
        pass


def _transcript(i: int, text: str = "") -> Transcript:
    return Transcript("call-1", "agent", 1000 * i, 1000 * i + 500, text or f"utt {i}", "en",
                      "en", -0.1, "model", "faster-whisper", (), ())  # fmt: skip


def _publish(producer: _Producer, transcripts: list[Transcript]) -> tuple[list[int], list[Any]]:
    fn = PublishRecordsFn(TranscriptSinkConfig("127.0.0.1:1", "live"))
    fn._producer = producer
    fn._wait = BrokerWait("test", initial_s=0.001)
    fn.start_bundle()
    dead = []
    for t in transcripts:
        dead += list(fn.process(t, 0, GlobalWindow()))
    dead += list(fn.finish_bundle())
    order = [json.loads(v)["start_ms"] // 1000 for v in producer.sent]
    return order, dead


def test_records_lost_in_an_outage_are_sent_again_in_order() -> None:
    # the 2nd and 3rd deliveries expire: every record from the first lost one is sent again
    order, dead = _publish(_Producer(frozenset({1, 2})), [_transcript(i) for i in range(4)])
    assert order == [0, 1, 2, 3, 1, 2, 3], order  # the last copies keep the call's order
    assert dead == []


def test_a_refused_record_is_a_dead_letter_and_the_rest_go_out() -> None:
    order, dead = _publish(_Producer(), [_transcript(0), _transcript(1, "huge"),
                                               _transcript(2)])  # fmt: skip
    assert order == [0, 2]
    assert len(dead) == 1 and dead[0].value.reason == "publish_error"


def test_kafka_python_warnings_show_once_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    kafka_client.quiet_connection_logs()
    noisy = logging.getLogger("kafka.cluster")
    before = kafka_client._BURSTS.dropped
    kafka_client._BURSTS._last = -1e9  # as after a quiet spell
    with caplog.at_level(logging.WARNING, logger="kafka.cluster"):
        for _ in range(20):
            noisy.error("Metadata refresh: failed KafkaConnectionError: 111 ECONNREFUSED")
    shown = [r for r in caplog.records if r.name == "kafka.cluster"]
    assert len(shown) == 1 and "left out of the log" in shown[0].getMessage()
    assert kafka_client._BURSTS.dropped - before == 19


def test_the_first_kafka_python_error_of_a_burst_is_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kafka-python logs a socket closed under a read with its traceback; the job's log gets
    one line with the exception."""
    kafka_client.quiet_connection_logs()
    kafka_client._BURSTS._last = -1e9
    transport = logging.getLogger("kafka.net.transport")
    with caplog.at_level(logging.WARNING, logger="kafka.net.transport"):
        try:
            None.recv(4096)  # type: ignore[attr-defined]
        except AttributeError:
            transport.exception("%s: Error receiving network data closing socket", "<100%>")
    (shown,) = [r for r in caplog.records if r.name == "kafka.net.transport"]
    assert shown.exc_info is None and "Traceback" not in caplog.text
    assert shown.getMessage().startswith(
        "<100%>: Error receiving network data closing socket (AttributeError: 'NoneType' "
        "object has no attribute 'recv') (further kafka-python warnings are left out"
    )


def test_client_settings_stay_out_of_the_configs_reprs() -> None:
    from transforms.io.commit import CommitConfig
    from transforms.io.kafka_source import KafkaSourceConfig

    secret = (("sasl_plain_password", "s3cret"),)
    configs = [
        KafkaSourceConfig("b:9092", "t", consumer_config=secret),
        CommitConfig("b:9092", "g", "/tmp/cp", consumer_config=secret),
        TranscriptSinkConfig("b:9092", "live", client_config=secret),
    ]
    assert not [repr(c) for c in configs if "s3cret" in repr(c)]
