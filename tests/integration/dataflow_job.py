"""Build the callqa job for Dataflow offline and write what would be submitted, as JSON.

Run by ``test_dataflow.py`` with the python of the ``dataflow`` environment (Beam's GCP extra;
the job's .venv cannot hold it): ``python dataflow_job.py streaming|batch OUT.json OPTIONS…``.
The pipeline is the job's own (``make_pipeline``; the batch job's ``batch_config`` and
``build_batch_pipeline``), run by the DataflowRunner with ``--dry_run=True``: it translates the
graph to the Runner v2 pipeline proto and the Dataflow ``Job`` and stops before any network
call (no preflight: nothing contacts Kafka). The dry run leaves the job's environment (worker
pool, experiments, service options, container images) empty, since the runner makes it while
staging files; ``describe`` makes it here the same way, minus the uploads.

OUT.json holds ``job`` (the Dataflow Job message, as the API receives it), ``pipeline`` (the
Runner API pipeline proto: transforms, environments, resource hints) and ``beam_jobs`` (the
checkout the job was built from).
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.dataflow.internal import apiclient
from google.protobuf import json_format

import beam_jobs
from beam_jobs.batch import batch_config, build_batch_pipeline
from beam_jobs.pipeline import make_pipeline
from beam_jobs.runner import runner_options


def build(mode: str, argv: list[str]) -> beam.Pipeline:
    """The job's pipeline for ``mode`` (streaming: the Kafka job; batch: one wave of
    recordings), built exactly as ``callqa run`` / ``callqa batch`` build it."""
    if mode == "streaming":
        p, _ = make_pipeline(argv)
        return p
    options = PipelineOptions(runner_options(argv))
    cfg = batch_config(options)
    p = beam.Pipeline(options=options)
    build_batch_pipeline(p, cfg, cfg.tasks)
    return p


def describe(job: Any) -> dict[str, Any]:
    """The submitted job as JSON: ``DataflowApplicationClient.create_job_description`` without
    staging (no files uploaded, no client: it would look for credentials)."""
    staged = f"{job.google_cloud_options.staging_location}/pipeline.pb"
    apiclient.DataflowApplicationClient._apply_sdk_environment_overrides(
        job.proto_pipeline, {}, job.options
    )
    job.proto.environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=staged,
        proto_pipeline=job.proto_pipeline,
    ).proto
    return {
        "job": json.loads(job.json()),
        "pipeline": json_format.MessageToDict(job.proto_pipeline),
        "beam_jobs": str(Path(beam_jobs.__file__).resolve().parent),
    }


#: Every attempt to reach another machine (Kafka, GCS, the metadata server for credentials).
REFUSED: list[str] = []


def refuse_network() -> None:
    """Make any name lookup or connection fail at once, and note it: the dry run must need
    none (a Kafka preflight, a bucket lookup or a credentials search would show here)."""

    def refuse(*args: Any, **_: Any) -> Any:
        REFUSED.append(repr(args[:2]))
        raise ConnectionRefusedError(f"no network in an offline dry run: {args[:2]!r}")

    socket.getaddrinfo = refuse  # type: ignore[assignment]
    socket.create_connection = refuse  # type: ignore[assignment]
    socket.socket.connect = refuse  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    mode, out, *options = argv
    if mode not in ("streaming", "batch"):
        raise SystemExit(f"mode must be streaming or batch, not {mode!r}")
    refuse_network()
    p = build(mode, [*options, "--dry_run=True"])
    result = p.run()  # the DataflowRunner's dry run: translated, not submitted
    Path(out).write_text(json.dumps(describe(result.job), indent=1))
    if REFUSED:  # even where a library caught the error and went on
        print(f"dataflow_job: the dry run tried the network: {REFUSED}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
