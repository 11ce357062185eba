"""One place that builds kafka-python clients (consumers for the source and the offset
committer, producers for the live-transcript sink and the producer tool) and rides out broker
outages: ``BrokerWait`` retries a call while the broker is away (``transforms.io.outage``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from transforms.io.outage import Outage

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
            # one line: kafka-python logs some socket races with a traceback (a transport
            # closed under a read as a client closes); the exception's own line says enough
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text = f"{text} ({type(exc).__name__}: {exc})"
            record.msg = (
                f"{text} (further kafka-python warnings are left out of the log until it has "
                f"been quiet for {_BURST_QUIET_S:.0f} s)"
            )
            record.args, record.exc_info, record.exc_text = None, None, None
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


class BrokerWait(Outage):
    """Rides out broker outages for one Kafka client of a stage (``Outage``): retries what
    fails with a transient Kafka error; metrics ``callqa.kafka/outages``, ``outage_retries``."""

    def __init__(self, what: str, initial_s: float = 0.5, max_backoff_s: float = 10.0) -> None:
        super().__init__(what, is_transient, "Kafka unreachable", "Kafka reachable again",
                         "kafka", initial_s, max_backoff_s)  # fmt: skip


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
