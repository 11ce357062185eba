"""Runner selection: Prism by default, always with a local binary (never a download)."""

from __future__ import annotations

import itertools
import logging
import threading
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
    come from threads of a job that is ending."""

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
        if record.name.startswith("apache_beam") and record.levelno >= logging.ERROR:
            text = record.getMessage()  # a DoFn's failure carries the gRPC error as text
            if "StatusCode.UNAVAILABLE" in text or "StatusCode.CANCELLED" in text:
                level = logging.WARNING if next(self._seen) == 0 else logging.DEBUG
                _LOG.log(level, "a stream to the runner closed (in %s)", record.name)
                return False
        return True


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
