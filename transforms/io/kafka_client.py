"""One place that builds kafka-python clients (consumers for the source and the offset
committer, producers for the live-transcript sink and the producer tool) and rides out broker
outages: ``BrokerWait`` retries a call while the broker is away, with capped exponential
backoff (tenacity), and logs one line when an outage starts and one when it ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
#: A burst of kafka-python warnings (a reconnect attempt each, while a broker is down) shows
#: its first line; the rest are left out until the library was quiet this long.
_BURST_QUIET_S: Final = 30.0


def is_transient(exc: BaseException) -> bool:
    """Whether the broker's return cures ``exc``: unreachable, timed out, leader moving
    (kafka-python marks these ``retriable``). Refusals of a record or of credentials are not."""
    from kafka.errors import KafkaError

    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


class _FirstOfBurst(logging.Filter):
    """Passes the first kafka-python warning or error of a burst and drops the rest, until the
    library has been quiet for ``_BURST_QUIET_S``: while a broker is down every reconnect,
    metadata refresh and fetch logs a line, several a second."""

    def __init__(self) -> None:
        super().__init__("kafka")
        self._last = -_BURST_QUIET_S
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        first, self._last = now - self._last >= _BURST_QUIET_S, now
        if first:
            record.msg = (
                f"{record.msg} (further kafka-python warnings are left out of the log until it "
                f"has been quiet for {_BURST_QUIET_S:.0f} s)"
            )
            return True
        self.dropped += 1
        return False


_BURSTS: Final = _FirstOfBurst()


def quiet_connection_logs() -> None:
    """Log the first of kafka-python's warnings per outage, not one per reconnect attempt
    (``_FirstOfBurst`` on every kafka-python logger; ``BrokerWait`` adds the job's own line)."""
    import kafka  # noqa: F401 - its modules create their loggers on import

    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        ours = name == "kafka" or name.startswith("kafka.")
        if ours and isinstance(logger, logging.Logger) and _BURSTS not in logger.filters:
            logger.addFilter(_BURSTS)


class BrokerWait:
    """Rides out broker outages for one client of a stage. ``call`` runs a Kafka call and
    retries it while it fails with a transient error (backoff from ``initial_s`` doubling to
    ``max_backoff_s``, jittered) for as long as the outage lasts; a caller that must not block
    notes failures itself (``failed``, ``recovered``).

    One warning when an outage starts, one when the broker answers again; metrics
    ``callqa.kafka/outages`` and ``callqa.kafka/outage_retries``."""

    def __init__(self, what: str, initial_s: float = 0.5, max_backoff_s: float = 10.0) -> None:
        self.what = what
        self._initial_s = initial_s
        self._max_backoff_s = max_backoff_s
        self._began: float | None = None

    @property
    def in_outage(self) -> bool:
        return self._began is not None

    def failed(self, exc: BaseException) -> None:
        """A transient failure: the first of an outage is logged, every one counted."""
        from apache_beam.metrics import Metrics

        Metrics.counter("callqa.kafka", "outage_retries").inc()
        if self._began is None:
            self._began = time.monotonic()
            Metrics.counter("callqa.kafka", "outages").inc()
            _LOG.warning("%s: Kafka unreachable (%s: %s); retrying until it is back",
                         self.what, type(exc).__name__, exc)  # fmt: skip

    def recovered(self) -> None:
        if self._began is not None:
            _LOG.warning("%s: Kafka reachable again after %.1f s", self.what,
                         time.monotonic() - self._began)  # fmt: skip
            self._began = None

    def call(self, fn: Callable[[], _T]) -> _T:
        from tenacity import RetryCallState, Retrying, retry_if_exception, stop_never
        from tenacity import wait_exponential_jitter as backoff

        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                self.failed(exc)

        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            wait=backoff(initial=self._initial_s, max=self._max_backoff_s),
            stop=stop_never,
            before_sleep=note,
            reraise=True,
        ):
            with attempt:
                result = fn()
        self.recovered()
        return result


def new_consumer(
    bootstrap_servers: str,
    group_id: str,
    client_config: tuple[tuple[str, Any], ...] = (),
    **settings: Any,
) -> Any:
    """A consumer of ``group_id`` that never auto-commits (the pipeline commits itself).

    ``client_config`` carries the user's connection settings (``security_protocol``,
    ``sasl_*``, ``ssl_*``, ...); it overrides the defaults here.
    """
    from kafka import KafkaConsumer  # imported where used: on workers, in setup()

    merged: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers.split(","),
        "group_id": group_id,
        "enable_auto_commit": False,
        **settings,
    }
    merged.update(dict(client_config))
    return KafkaConsumer(**merged)


def new_producer(
    bootstrap_servers: str, client_config: tuple[tuple[str, Any], ...] = (), **extra: Any
) -> Any:
    """An idempotence-friendly producer (``acks=all``); ``client_config`` as for consumers."""
    from kafka import KafkaProducer

    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers.split(","),
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": 4 * 1024 * 1024,
    }
    settings.update(extra)
    settings.update(dict(client_config))
    return KafkaProducer(**settings)
