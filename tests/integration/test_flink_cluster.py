"""The streaming job on a real Flink 1.16 session cluster (deploy/flink/cluster.sh): a
JobManager and two TaskManagers as separate JVMs, the Python SDK workers in Beam's worker pool
(``--environment_type=EXTERNAL``), parallelism 2, submitted through Beam's Flink job server.

Calls come out once each while the work is spread over both TaskManagers; then one
TaskManager is killed (SIGKILL) while calls stream in: Flink restarts the job on the slots left
and the calls before, during and after the loss still come out once each (0 lost, 0
duplicated).

The runbook's upgrade on Flink (``full``: not in the default run, ``pytest -m full``; the same
upgrade runs on Prism in test_upgrade): a TaskManager is added, the job is cancelled through
Flink's REST API while calls stream in and submitted again as ``callqa run``: it resumes from
the delivery ledger, on both TaskManagers, and every call still comes out once; SIGTERM to the
launcher leaves its Flink job CANCELED."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from beam_jobs import warehouse
from beam_jobs.bench.capacity import start_job, stop_job
from beam_jobs.demo.producer import synthetic_call
from beam_jobs.runner import flink_rest
from beam_jobs.services.local import free_port
from tests.integration.harness import (
    assert_each_call_once,
    call_state_topic,
    produce_calls,
    streaming_job,
)
from tests.integration.test_flink import flink_job_server_jar  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "flink" / "cluster.sh"


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.dir = Path(env["FLINK_CLUSTER_DIR"])
        self.master = f"127.0.0.1:{env['FLINK_REST_PORT']}"
        self.pool = f"127.0.0.1:{env['BEAM_WORKER_POOL_PORT']}"

    def run(self, command: str) -> None:
        subprocess.run([str(CLUSTER), command], env=self.env, check=True, timeout=400)

    def rest(self, path: str, method: str = "GET") -> Any:
        return flink_rest(f"http://{self.master}", path, method)

    def pid(self, name: str) -> int:
        return int((self.dir / f"{name}.pid").read_text())

    def running_job(self) -> str:
        (job,) = [j["jid"] for j in self.rest("/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
        return str(job)

    def records_per_taskmanager(self, job: str) -> dict[str, int]:
        """Records each TaskManager's subtasks received, over all of the job's vertices."""
        out: dict[str, int] = {}
        for v in self.rest(f"/jobs/{job}")["vertices"]:
            for tm in self.rest(f"/jobs/{job}/vertices/{v['id']}/taskmanagers")["taskmanagers"]:
                key = tm["taskmanager-id"]
                out[key] = out.get(key, 0) + int(tm["metrics"]["read-records"])
        return out

    def spread(self, job: str, timeout_s: float = 60) -> dict[str, int]:
        """``records_per_taskmanager`` once both TaskManagers show records: the REST API's
        metrics are fetched from the TaskManagers every 10 s."""
        deadline = time.monotonic() + timeout_s
        while True:
            spread = self.records_per_taskmanager(job)
            if len(spread) == 2 and all(spread.values()) or time.monotonic() > deadline:
                return spread
            time.sleep(2)


def assert_spread(spread: dict[str, int]) -> None:
    assert len(spread) == 2 and all(n > 0 for n in spread.values()), spread


@pytest.fixture
def flink_cluster(tmp_path: Path, flink_job_server_jar: str) -> Iterator[Cluster]:  # noqa: F811
    rest_port, rpc_port, pool_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "FLINK_CLUSTER_DIR": str(tmp_path / "flink"),
        "FLINK_REST_PORT": str(rest_port),
        "FLINK_RPC_PORT": str(rpc_port),
        "BEAM_WORKER_POOL_PORT": str(pool_port),
    }
    cluster = Cluster(env)
    cluster.run("start")
    try:
        yield cluster
    finally:
        cluster.run("stop")


class ClusterJob(NamedTuple):
    """The streaming job's options for the cluster (parallelism 2, SDK workers in the pool),
    its warehouse, and where it reads."""

    cluster: Cluster
    argv: list[str]
    out: Path
    bootstrap: str
    topic: str

    def first_calls(self, prefix: str, n: int) -> tuple[dict[str, int], str]:
        """``n`` 4-s calls sent and final once each: chunks per call, and the Flink job."""
        calls = [synthetic_call(f"{prefix}{i}", 4.0, seed=i) for i in range(n)]
        sent = produce_calls(self.bootstrap, self.topic, calls, int(time.time() * 1000) + 3000, 300)
        warehouse.wait_for_final_calls(self.out, sent, timeout_s=300)
        return sent, self.cluster.running_job()


@pytest.fixture
def cluster_job(
    kafka_bootstrap: str,
    flink_cluster: Cluster,
    flink_job_server_jar: str,  # noqa: F811
    topic: str,
    tmp_path: Path,
) -> ClusterJob:
    out = tmp_path / "out"
    argv = [
        "--runner=FlinkRunner",
        f"--flink_master={flink_cluster.master}",
        f"--flink_job_server_jar={flink_job_server_jar}",
        "--environment_type=EXTERNAL",
        f"--environment_config={flink_cluster.pool}",
        "--parallelism=2",
        "--streaming",
        "--max_bundle_time_mills=100",
        f"--kafka_bootstrap_servers={kafka_bootstrap}",
        f"--kafka_topic={topic}",
        f"--kafka_group_id={topic}",
        f"--output_dir={out}",
        f"--call_state_topic={call_state_topic(topic)}",
    ]
    return ClusterJob(flink_cluster, argv, out, kafka_bootstrap, topic)


@pytest.mark.timeout(900)  # a wait for final rows on a slow, busy machine
def test_calls_once_each_on_two_taskmanagers_and_after_one_is_killed(
    cluster_job: ClusterJob,
) -> None:
    flink_cluster, argv, out, kafka_bootstrap, topic = cluster_job
    during = [synthetic_call(f"fc-b{i}", 8.0, seed=10 + i) for i in range(6)]
    t0 = time.monotonic()
    with streaming_job(argv):
        expected, job = cluster_job.first_calls("fc-a", 6)
        spread = flink_cluster.spread(job)
        print(f"{time.monotonic() - t0:.0f} s: records received per TaskManager: {spread}")
        assert_spread(spread)

        # calls stream in over ~10 s; one TaskManager dies 3 s in
        sent: dict[str, int] = {}
        producing = threading.Thread(
            target=lambda: sent.update(
                produce_calls(kafka_bootstrap, topic, during, int(time.time() * 1000), 400)
            )
        )
        producing.start()
        time.sleep(3)
        os.kill(flink_cluster.pid("taskmanager-1"), signal.SIGKILL)
        producing.join(timeout=120)
        assert sent, "the producer did not finish"
        expected |= sent
        warehouse.wait_for_final_calls(out, expected, timeout_s=400)
        overview = flink_cluster.rest("/overview")
        failures = flink_cluster.rest(f"/jobs/{job}/exceptions")["exceptionHistory"]["entries"]
        print(f"{time.monotonic() - t0:.0f} s: after the kill, {overview['taskmanagers']} "
              f"TaskManager, {len(failures)} failures")  # fmt: skip
        assert overview["taskmanagers"] == 1, overview
        assert failures, "Flink saw no failure: was the killed TaskManager working?"
        assert_each_call_once(out, expected)


@pytest.mark.full
@pytest.mark.timeout(1200)  # two waits for final rows on a slow, busy machine
def test_upgrade_on_the_cluster_resumes_from_the_ledger_on_both_taskmanagers(
    cluster_job: ClusterJob, tmp_path: Path
) -> None:
    flink_cluster, argv, out, kafka_bootstrap, topic = cluster_job
    after = [synthetic_call(f"fu-b{i}", 8.0, seed=20 + i) for i in range(4)]
    t0 = time.monotonic()
    sent: dict[str, int] = {}
    with streaming_job(argv):
        expected, job = cluster_job.first_calls("fu-a", 4)
        # the runbook's upgrade: a TaskManager added, the job cancelled through Flink's REST
        # API while calls stream, and submitted again from the ledger
        flink_cluster.run("add-taskmanager")
        producing = threading.Thread(target=lambda: sent.update(produce_calls(
            kafka_bootstrap, topic, after, int(time.time() * 1000), 400
        )))  # fmt: skip
        producing.start()
        time.sleep(3)
        flink_cluster.rest(f"/jobs/{job}?mode=cancel", method="PATCH")
        deadline = time.monotonic() + 60
        while flink_cluster.rest(f"/jobs/{job}")["state"] != "CANCELED":
            assert time.monotonic() < deadline, "the job did not cancel"
            time.sleep(0.5)
    # the new version as `callqa run`, stopped at the end as systemd or the supervisor does
    # (SIGTERM to its process group, the job server included): it cancels its Flink job
    log = tmp_path / "upgraded.log"
    launcher = start_job(argv, log)
    try:
        producing.join(timeout=120)
        assert sent, "the producer did not finish"
        expected |= sent
        warehouse.wait_for_final_calls(out, expected, timeout_s=400)
        upgraded = flink_cluster.running_job()
        spread = flink_cluster.spread(upgraded)
    finally:
        stop_job(launcher)
    print(f"{time.monotonic() - t0:.0f} s: after the upgrade, records per TaskManager: {spread}")
    assert_spread(spread)
    assert_each_call_once(out, expected, log.read_text())
    assert launcher.returncode == 128 + signal.SIGTERM, log.read_text()[-3000:]
    deadline = time.monotonic() + 60
    while (state := flink_cluster.rest(f"/jobs/{upgraded}")["state"]) != "CANCELED":
        assert time.monotonic() < deadline, f"the stopped launcher left its job {state}"
        time.sleep(0.5)
