"""Runner selection: Prism by default, always with a local binary (never a download)."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from beam_jobs.services.local import prism_binary

_LOG = logging.getLogger(__name__)

#: Runners that go through Beam's PortableRunner (job service streams with a deadline).
PORTABLE_RUNNERS = ("PrismRunner", "prism", "FlinkRunner", "PortableRunner")
#: The deadline of the job's state and message streams: ten years, i.e. none for a job.
JOB_STREAM_DEADLINE_S = 10 * 365 * 24 * 3600

#: Prism's switch for its dynamic bundle splits (all stages, not only splittable DoFns).
NO_SPLITS_EXPERIMENT = "prism_disable_sdf_split"


def runner_options(argv: list[str]) -> list[str]:
    """Add ``--runner=PrismRunner --prism_location=<binary>`` unless the caller chose otherwise.

    Beam would otherwise download Prism from GitHub (unreachable here) or fall back to the
    DirectRunner, which is not a streaming engine (it drains an unbounded source and stops).
    """
    if "--" in argv:
        raise ValueError("a bare '--' makes Beam drop every later option: remove it")
    args = list(argv)
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), None)
    if runner is None:
        args.append("--runner=PrismRunner")
        runner = "PrismRunner"
    if runner in ("PrismRunner", "prism"):
        if not any(a.startswith("--prism_location") for a in args):
            args.append(f"--prism_location={prism_binary()}")
        # Beam shares one Prism server per process, created with the options of whichever
        # pipeline came first (a DirectRunner delegating to Prism without a location, say).
        # A job of ours gets its own, started from its own binary.
        args.append("--experiments=disable_prism_server_singleton")
        # Prism 2.77 splits a slow bundle of a stateful stage and reschedules the residual
        # elements while the primary still runs their key: two bundles of one key at once,
        # and the later one's state write wins. Measured on the segmentation stage under
        # load: a chunk lost from its channel's buffer, a flush timer run twice. No splits.
        args.append(f"--experiments={NO_SPLITS_EXPERIMENT}")
    if runner in PORTABLE_RUNNERS and not any(
        # with --job_endpoint the same timeout is how long to wait for that server to answer
        a.startswith(("--job_server_timeout", "--job-server-timeout", "--job_endpoint"))
        for a in args
    ):
        # Beam's portable runner opens the job's state and message streams with this timeout
        # as their gRPC deadline (default 300 s): wait_until_finish then raised "Stream removed
        # (Deadline Exceeded)" 5 minutes into every job, and a batch over 30 minutes of
        # recordings died there. The job server is ours and local; submission errors still
        # come back at once.
        args.append(f"--job_server_timeout={JOB_STREAM_DEADLINE_S}")
    return args


class RunnerLost(RuntimeError):
    """The runner's job service stopped answering mid-job (its process died, say): this job
    process cannot go on, and a new one resumes from the checkpoints."""


class _QuietLostStreams(logging.Filter):
    """When the runner goes away, the SDK worker in this process (LOOPBACK) has threads that die
    on its closed streams, and Beam's loggers (the data plane, a DoFn whose state read failed)
    log each with a traceback: the first of these is one warning line, the rest debug lines;
    the main thread then says what happened. Once it has, Beam's records are dropped: they
    come from threads of a job that is ending. The SDK worker also prints a failed bundle's
    traceback to stderr before it logs it; ``_QuietStderr`` treats that text the same way."""

    def __init__(self) -> None:
        super().__init__()
        self.default_hook = threading.excepthook
        self._seen = itertools.count()
        self.lost = False

    def install(self) -> None:
        """Quiet this process's threads and Beam's loggers for a new job, once per handler (a
        filter per job would note each closed stream again, with its own first warning)."""
        self._seen = itertools.count()
        self.lost = False
        if threading.excepthook != self.excepthook:
            self.default_hook = threading.excepthook
            threading.excepthook = self.excepthook
        # records of every Beam logger pass the root handlers; the data plane's may not
        places = [
            logging.getLogger("apache_beam.runners.worker.data_plane"),
            *logging.getLogger().handlers,
        ]
        for place in places:
            if self not in place.filters:
                place.addFilter(self)
        if not isinstance(sys.stderr, _QuietStderr):
            sys.stderr = _QuietStderr(sys.stderr, self)

    def _noted(self, exc: BaseException | None, where: str) -> bool:
        """Whether ``exc`` is a closed runner stream (then logged as one line)."""
        import grpc

        code = exc.code() if isinstance(exc, grpc.RpcError) else None
        if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return False
        level = logging.WARNING if next(self._seen) == 0 else logging.DEBUG
        _LOG.log(level, "a stream to the runner closed (%s, in %s)", code.name, where)
        return True

    def excepthook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "a thread"
        if not self._noted(args.exc_value, f"thread {name}"):
            self.default_hook(args)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.lost and record.name.startswith("apache_beam"):
            return False
        if record.exc_info and self._noted(record.exc_info[1], record.name):
            return False
        # a DoFn's failure carries the gRPC error as text
        return not (
            record.name.startswith("apache_beam")
            and record.levelno >= logging.ERROR
            and self.closed_stream_text(record.getMessage(), record.name)
        )

    def closed_stream_text(self, text: str, where: str) -> bool:
        """Whether ``text`` tells of a closed runner stream (then noted as one line)."""
        if "StatusCode.UNAVAILABLE" not in text and "StatusCode.CANCELLED" not in text:
            return False
        level = logging.WARNING if next(self._seen) == 0 else logging.DEBUG
        _LOG.log(level, "a stream to the runner closed (in %s)", where)
        return True


class _QuietStderr:
    """``sys.stderr`` while a job runs: what a thread other than the main one writes is passed
    on, except a traceback of a closed runner stream (noted as ``_QuietLostStreams`` notes a
    log record), or any traceback once the runner is lost. Beam's SDK worker ``print``s a
    failed bundle's traceback there, past every logging filter (CI saw one after
    ``lost the runner mid-job``)."""

    def __init__(self, stream: Any, quiet: _QuietLostStreams) -> None:
        self._stream = stream
        self._quiet = quiet
        self._dropped = threading.local()  # the newline print() writes after a dropped text

    def write(self, text: str) -> int:
        if threading.current_thread() is not threading.main_thread():
            if text == "\n" and getattr(self._dropped, "last", False):
                self._dropped.last = False
                return len(text)
            self._dropped.last = False
            if text.startswith("Traceback (most recent call last)") and (
                self._quiet.lost or self._quiet.closed_stream_text(text, "an SDK worker thread")
            ):
                self._dropped.last = True
                return len(text)
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_QUIET = _QuietLostStreams()


def wait_until_finish(result: Any) -> Any:
    """``result.wait_until_finish()``; a runner that goes away meanwhile (its process killed,
    say) raises one ``RunnerLost`` instead of gRPC tracebacks from this and every SDK worker
    thread. Installs the quieting for good: worker threads may die after this returns."""
    import grpc

    quiet = _QUIET
    quiet.install()
    try:
        return result.wait_until_finish()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        quiet.lost = True
        raise RunnerLost(
            f"lost the runner mid-job: its job service stopped answering ({exc.details()}); "
            "start the job again (deploy/local/supervise.sh does it by itself): it resumes "
            "from its checkpoints"
        ) from exc


class Stopped(Exception):  # noqa: N818 (a stop request, not an error)
    """The launcher was told to stop (SIGTERM: systemd, the supervisor; SIGINT: Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the job runs, SIGTERM and SIGINT raise ``Stopped`` in the main thread, so that
    the launcher cancels its job instead of dying and leaving it running on a cluster."""

    def stop(signum: int, _frame: Any) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


#: Flink masters that are not a cluster of their own (the job server's embedded one).
_EMBEDDED_FLINK = ("[local]", "[auto]", "[collection]")
_LIVE_FLINK_STATES = ("CREATED", "RUNNING", "RESTARTING", "FAILING", "RECONCILING")


def flink_rest_url(flink_master: str | None) -> str | None:
    """The REST address of a Flink cluster the job was submitted to, None when embedded."""
    if not flink_master or flink_master in _EMBEDDED_FLINK:
        return None
    return flink_master if "://" in flink_master else f"http://{flink_master}"


def flink_rest(rest_url: str, path: str, method: str = "GET", timeout_s: float = 10.0) -> Any:
    """One call to Flink's REST API (``path`` like ``/jobs/overview``): its JSON answer."""
    request = urllib.request.Request(f"{rest_url}{path}", method=method)
    with urllib.request.urlopen(request, timeout=timeout_s) as r:
        return json.load(r)


def flink_jobs_of(overview: dict[str, Any], beam_job_id: str) -> list[str]:
    """Flink job ids, still live, of the Beam job ``beam_job_id`` (``<job name>_<uuid>``: the
    Flink job carries the name) in Flink's ``/jobs/overview``."""
    name = beam_job_id.rsplit("_", 1)[0]
    return [
        str(j["jid"])
        for j in overview.get("jobs", [])
        if j.get("name") == name and j.get("state") in _LIVE_FLINK_STATES
    ]


def cancel_job(result: Any, flink_master: str | None, timeout_s: float = 10.0) -> None:
    """Cancel the running job, best effort and bounded in time. On a Flink cluster through
    Flink's REST API first: the job server is this process's child, so a signal to the
    process group (systemd, the supervisor) stops it too, and the job would run on."""
    _QUIET.lost = True  # the job is ending: its threads' records are dropped, as when lost
    rest = flink_rest_url(flink_master)
    job_id = str(getattr(result, "_job_id", ""))
    if rest is not None and job_id:
        try:
            for jid in flink_jobs_of(
                flink_rest(rest, "/jobs/overview", timeout_s=timeout_s), job_id
            ):
                flink_rest(rest, f"/jobs/{jid}?mode=cancel", method="PATCH", timeout_s=timeout_s)
                _LOG.warning("cancelled Flink job %s (%s) at %s", jid, job_id, rest)
        except (OSError, ValueError) as exc:
            _LOG.error("could not cancel the job on Flink at %s: %s; cancel it there", rest, exc)
    done = threading.Thread(target=_cancel_quietly, args=(result,), daemon=True)
    done.start()
    done.join(timeout_s)


def _cancel_quietly(result: Any) -> None:
    try:
        result.cancel()
    except Exception as exc:  # noqa: BLE001 (the runner may be gone already: a stop is a stop)
        _LOG.info("cancelling through the job service: %s", exc)
