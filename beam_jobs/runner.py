"""Runner selection: Prism by default, always with a local binary (never a download)."""

from __future__ import annotations

from beam_jobs.services.local import prism_binary

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
