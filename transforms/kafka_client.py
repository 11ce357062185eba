"""One place that builds kafka-python consumers for the source and the offset committer."""

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
