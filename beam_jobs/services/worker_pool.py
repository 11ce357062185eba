"""Beam's Python worker pool for a Flink session cluster (``--environment_type=EXTERNAL``),
bound to one interface.

``python -m apache_beam.runners.worker.worker_pool_main`` listens on every interface, and
anyone who reaches it can make it start SDK workers. This starts the same servicer on
``--host`` (default 127.0.0.1). Each TaskManager that runs a Python stage asks it for a worker,
which it starts as a process of this environment's python (on ``PATH`` first), so the
TaskManagers' stages run on separate cores. Beam's servicer pipes each worker's stdout and
never reads it: a worker that printed 64 KiB would block on its next print. Here every line a
worker prints goes to this pool's log, prefixed with its worker id.

    python -m beam_jobs.services.worker_pool --port=50000
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

_LOG = logging.getLogger(__name__)


def relay_output(worker_id: str, stream: IO[bytes]) -> None:
    """Log each line of a worker's stdout until it closes (the worker ended)."""
    with stream:
        for line in iter(stream.readline, b""):
            _LOG.info("worker %s: %s", worker_id, line.decode(errors="replace").rstrip())


class RelayingWorkerPool(BeamFnExternalWorkerPoolServicer):
    """Beam's worker pool, with each worker's stdout read and logged."""

    def StartWorker(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        response = super().StartWorker(request, context)
        process = self._worker_processes.get(request.worker_id)
        if process is not None and process.stdout is not None:
            threading.Thread(
                target=relay_output, args=(request.worker_id, process.stdout),
                name=f"stdout-{request.worker_id}", daemon=True,
            ).start()  # fmt: skip
        return response


def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; then stop the workers started."""
    # The servicer starts each worker as `python -c ...`: this environment's python.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    pool = RelayingWorkerPool(use_process=True)
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise SystemExit(f"worker pool: cannot listen on {host}:{port}")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    _LOG.info("worker pool listening on %s:%d", host, bound)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=None)
    for worker_id in list(pool._worker_processes):  # noqa: SLF001 (Beam keeps no public list)
        pool._worker_processes.pop(worker_id).terminate()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=50000)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
