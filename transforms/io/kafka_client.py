"""One place that builds kafka-python clients: consumers for the source and the offset
committer, producers for the live-transcript sink and the producer tool."""

from __future__ import annotations

from typing import Any


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
