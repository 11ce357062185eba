"""Riding out a resource that is away for a while (a Kafka broker, the output disk): retry
with capped, jittered exponential backoff (tenacity) for as long as it lasts, and log one line
when it starts and one when it ends, not one per attempt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")


class Outage:
    """One client's view of a resource that may be away. ``call`` runs an operation and
    retries it while it fails with an error ``transient`` accepts (backoff from ``initial_s``
    doubling to ``max_backoff_s``); a caller that must not block notes failures itself
    (``failed``, ``recovered``). Metrics ``callqa.<metrics>/outages`` and ``outage_retries``."""

    def __init__(
        self,
        what: str,
        transient: Callable[[BaseException], bool],
        lost: str,
        back: str,
        metrics: str,
        initial_s: float = 0.5,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.what = what
        self._transient = transient
        self._lost, self._back, self._metrics = lost, back, f"callqa.{metrics}"
        self._initial_s = initial_s
        self._max_backoff_s = max_backoff_s
        self._began: float | None = None

    @property
    def in_outage(self) -> bool:
        return self._began is not None

    def failed(self, exc: BaseException) -> None:
        """A transient failure: the first of an outage is logged, every one counted."""
        from apache_beam.metrics import Metrics

        Metrics.counter(self._metrics, "outage_retries").inc()
        if self._began is None:
            self._began = time.monotonic()
            Metrics.counter(self._metrics, "outages").inc()
            _LOG.warning("%s: %s (%s: %s); retrying until it is back",
                         self.what, self._lost, type(exc).__name__, exc)  # fmt: skip

    def recovered(self) -> None:
        if self._began is not None:
            _LOG.warning("%s: %s after %.1f s", self.what, self._back,
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
            retry=retry_if_exception(self._transient),
            wait=backoff(initial=self._initial_s, max=self._max_backoff_s),
            stop=stop_never,
            before_sleep=note,
            reraise=True,
        ):
            with attempt:
                result = fn()
        self.recovered()
        return result
