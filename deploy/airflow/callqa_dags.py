"""Airflow 3 DAGs for callqa (docs/operations.md#scheduled-runs-airflow).

``callqa_nightly`` (02:00 UTC): ``callqa batch`` over the recordings of the previous UTC day
(the data interval's start), then ``callqa report`` for that day. The batch job skips calls
whose complete final row is already in the warehouse, so a retried or re-run task adds no rows.

``callqa_redeploy`` (manual, params ``asr`` and ``scorecard``): a canary ``callqa batch`` with
the new settings, then the restart command, then a check that the streaming job came back with
them and stays up.

Every task runs the job through its own environment's CLI (Variable ``callqa_cli``) in a
subprocess of its own process group, killed when the task times out or is stopped; Airflow's
environment holds Airflow only (deploy/lock/airflow.txt). Settings are Airflow Variables
(or ``AIRFLOW_VAR_<NAME>`` environment variables), read when a task runs, never at parse time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, Variable, dag, task
from airflow.sdk.exceptions import AirflowFailException

#: The job's CLI, in its own environment (as in deploy/systemd/callqa-stream.service).
DEFAULT_CLI = "/opt/callqa/.venv/bin/callqa"
#: ``{day}`` is the UTC day (YYYY-MM-DD) whose recordings the nightly run processes.
DEFAULT_RECORDINGS = "/var/lib/callqa/recordings/{day}/**/*"
DEFAULT_BATCH_OUTPUT_DIR = "/var/lib/callqa/batch"
DEFAULT_BATCH_OPTIONS = '["--asr=embedded"]'
#: Writes the new options where deploy/systemd/callqa-stream.service reads them, restarts it.
DEFAULT_RESTART_COMMAND = (
    'printf \'CALLQA_ASR=%s\\nCALLQA_SCORECARD=%s\\n\' "$CALLQA_ASR" "$CALLQA_SCORECARD" '
    "> /etc/callqa/model.env && sudo -n systemctl restart callqa-stream"
)
DEFAULT_PID_COMMAND = "systemctl show --property=MainPID --value callqa-stream"
#: Batch statuses of a file that needs nothing more (beam_jobs/batch.py).
_DONE = frozenset({"processed", "skipped"})
#: A file the batch job dead-lettered (unreadable, too long, …): retrying does not help.
_BAD_FILE = "failed"


def _setting(name: str, default: str) -> str:
    return str(Variable.get(name, default=default))


def _cli() -> list[str]:
    """Variable ``callqa_cli``: the job's ``callqa``, or a command line that runs it."""
    return shlex.split(_setting("callqa_cli", DEFAULT_CLI))


def _options(name: str, default: str) -> list[str]:
    """A Variable holding a JSON list of extra command-line options."""
    value = json.loads(_setting(name, default))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AirflowFailException(f"Variable {name} must be a JSON list of strings: {value!r}")
    return value


def run_cli(argv: list[str], env: dict[str, str] | None = None, leftovers: bool = False) -> int:
    """Runs ``argv`` (output into the task's log) in a process group of its own and returns its
    exit status. The group (the job, Prism, SDK workers) never outlives the call: it is killed
    when the task times out (execution_timeout raises in here) or is stopped (SIGTERM: Airflow
    only calls the operator's no-op on_kill for a @task), and whatever the job left behind is
    killed when it ends, unless ``leftovers`` (a restart command may start the job)."""
    print("running:", shlex.join(argv), flush=True)
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, start_new_session=True)
    previous = signal.getsignal(signal.SIGTERM)
    last_resort = threading.Timer(30, _kill_group, (proc.pid,))
    last_resort.daemon = True

    def stop(signum: int, frame: Any) -> None:  # no waiting here: proc.wait() holds its lock
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if last_resort.ident is None:  # not started by an earlier SIGTERM
            last_resort.start()
        if callable(previous):
            previous(signum, frame)

    with contextlib.suppress(ValueError):  # ValueError: not the main thread (no signals)
        signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    finally:
        _end_group(proc, leftovers)
        last_resort.cancel()
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)


def _end_group(proc: subprocess.Popen[bytes], leftovers: bool = False) -> None:
    """SIGTERM to the group while its leader runs (30 s grace), then SIGKILL to what is left
    (but for ``leftovers`` once the leader ended by itself)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    elif leftovers:
        return
    _kill_group(proc.pid)
    proc.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def nightly_day(params: dict[str, Any], data_interval_start: datetime) -> str:
    """The UTC day to process: the ``day`` param, else the data interval's start (a scheduled
    run at 02:00 on the 26th covers the 25th; so does a manual run triggered then)."""
    return str(params.get("day") or data_interval_start.astimezone(UTC).date().isoformat())


@dag(
    dag_id="callqa_nightly",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    # Early: a run whose logical date precedes start_date "succeeds" with no task run at all.
    start_date=datetime(2020, 1, 1, tzinfo=UTC),
    # A missed night is not run by itself (no burst of batch jobs after an outage): backfill
    # it on purpose (docs/operations.md); one run at a time, so runs never share the warehouse.
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=20),
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
        "retry_exponential_backoff": True,
    },
    params={"day": Param(None, type=["null", "string"], description="YYYY-MM-DD to redo")},
    tags=["callqa"],
    doc_md=__doc__,
)
def callqa_nightly() -> None:
    @task(execution_timeout=timedelta(hours=10))
    def batch(
        params: dict[str, Any] | None = None, data_interval_start: datetime | None = None
    ) -> dict[str, Any]:
        """``callqa batch`` over the day's recordings: what is final already is skipped.
        Returns the day and the files it dead-lettered (unreadable, too long, …): retrying
        cannot fix those, so they are reported after the report, not retried."""
        assert params is not None and data_interval_start is not None  # from the context
        day = nightly_day(params, data_interval_start)
        out = Path(_setting("callqa_batch_output_dir", DEFAULT_BATCH_OUTPUT_DIR))
        summary = out / "batch_summaries" / f"{day}.json"
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.unlink(missing_ok=True)  # never read an earlier attempt's
        recordings = _setting("callqa_recordings", DEFAULT_RECORDINGS).format(day=day)
        argv = [
            *_cli(), "batch", f"--recordings={recordings}",
            f"--output_dir={out}", f"--summary_json={summary}", "--progress=off",
            *_options("callqa_batch_options", DEFAULT_BATCH_OPTIONS),
        ]  # fmt: skip
        rc = run_cli(argv)
        if rc == 0:
            return {"day": day, "bad_files": []}
        if rc != 1 or not summary.is_file():
            raise RuntimeError(f"callqa batch exited with status {rc} (see the log above)")
        files = json.loads(summary.read_text())["files"]
        retry = [f for f in files if f["status"] not in _DONE | {_BAD_FILE}]
        if retry:  # incomplete or partial transcripts: a retry redoes them as the next version
            names = ", ".join(f"{f['call_id']} ({f['status']})" for f in retry)
            raise RuntimeError(f"callqa batch left calls unfinished: {names}")
        return {"day": day, "bad_files": [f["path"] for f in files if f["status"] == _BAD_FILE]}

    @task(execution_timeout=timedelta(minutes=30))
    def report(done: dict[str, Any]) -> str:
        """``callqa report`` for the day: ``<output_dir>/reports/<day>/``."""
        day = done["day"]
        out = Path(_setting("callqa_batch_output_dir", DEFAULT_BATCH_OUTPUT_DIR))
        report_dir = out / "reports" / day
        argv = [
            *_cli(), "report", f"--output_dir={out}",
            f"--from={day}", f"--to={day}", f"--report_dir={report_dir}",
        ]  # fmt: skip
        rc = run_cli(argv)
        if rc != 0:
            raise RuntimeError(f"callqa report exited with status {rc} (see the log above)")
        return str(report_dir)

    @task(retries=0)
    def every_file_processed(done: dict[str, Any], report_dir: str) -> None:
        """Fails the run (without a retry) when a recording could not be processed."""
        if done["bad_files"]:
            raise AirflowFailException(
                f"{len(done['bad_files'])} recordings of {done['day']} are dead letters "
                f"(stage read; the reason is in the dead_letters table): {done['bad_files']}"
            )

    done = batch()
    every_file_processed(done, report(done))


callqa_nightly()


def _cmdline(pid: int) -> list[str]:
    """A local process's arguments ([] when there is no such process here)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _job_pid() -> int:
    """The streaming job's main pid (0: not running), from Variable ``callqa_job_pid_command``."""
    command = _setting("callqa_job_pid_command", DEFAULT_PID_COMMAND)
    done = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command!r} failed ({done.returncode}): {done.stderr.strip()}")
    return int(done.stdout.strip() or 0)


def _option(argv: list[str], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), None)


def _tone_wav(path: Path) -> None:
    """A 2 s two-channel 16 kHz WAV of a 300 Hz tone: the canary when none is configured."""
    import math

    frames = bytearray()
    for i in range(32000):
        value = int(6000 * math.sin(2 * math.pi * 300 * i / 16000))
        sample = value.to_bytes(2, "little", signed=True)
        frames += sample + sample
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(frames))


@dag(
    dag_id="callqa_redeploy",
    schedule=None,
    start_date=datetime(2020, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    params={
        "asr": Param("embedded", type="string", description="--asr: embedded or a model dir"),
        "scorecard": Param("default", type="string", description="--scorecard: default, off, YAML"),
        "settle_s": Param(120, type="integer", minimum=0, description="the job must stay up"),
    },
    tags=["callqa"],
    doc_md=__doc__,
)
def callqa_redeploy() -> None:
    @task(execution_timeout=timedelta(minutes=30))
    def validate(params: dict[str, Any] | None = None) -> None:
        """A canary ``callqa batch`` with the new ``--asr`` and ``--scorecard``: the job checks
        both before submission (the model's layout, the scorecard's rules) and then runs every
        stage over the canary recording; status 0 means its call got a complete final row. With
        a canary that has speech (Variable ``callqa_canary_recording``) the model transcribes
        it too."""
        assert params is not None
        with tempfile.TemporaryDirectory(prefix="callqa-canary-") as tmp:
            canary = _setting("callqa_canary_recording", "")
            if not canary:
                canary = f"{tmp}/canary.wav"
                _tone_wav(Path(canary))
            argv = [
                *_cli(), "batch", f"--recordings={canary}",
                f"--output_dir={tmp}/out", f"--asr={params['asr']}",
                f"--scorecard={params['scorecard']}", "--ceiling_sample_s=0", "--progress=off",
                *_options("callqa_canary_options", "[]"),
            ]  # fmt: skip
            rc = run_cli(argv)
        if rc != 0:
            raise AirflowFailException(
                f"the new settings failed the canary batch run (status {rc}, log above); the "
                "streaming job was not touched"
            )

    @task(execution_timeout=timedelta(minutes=10))
    def restart(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Variable ``callqa_restart_command`` with CALLQA_ASR and CALLQA_SCORECARD in its
        environment. The job resumes from its checkpoints: nothing lost, nothing duplicated."""
        assert params is not None
        before = _job_pid()
        previous = _cmdline(before) if before else []
        command = _setting("callqa_restart_command", DEFAULT_RESTART_COMMAND)
        env = {"CALLQA_ASR": params["asr"], "CALLQA_SCORECARD": params["scorecard"]}
        rc = run_cli(["/bin/sh", "-c", command], env=env, leftovers=True)
        if rc != 0:
            raise AirflowFailException(f"the restart command failed with status {rc}")
        return {
            "pid_before": before,
            "previous": {k: _option(previous, k) for k in ("asr", "scorecard")},
        }

    @task(execution_timeout=timedelta(minutes=30))
    def came_back(restarted: dict[str, Any], params: dict[str, Any] | None = None) -> None:
        """The job runs again (a new main pid) with the new options on its command line, and
        the same process is still up ``settle_s`` later (a job that crashes is restarted by its
        supervisor under another pid)."""
        assert params is not None
        wanted = {"asr": params["asr"], "scorecard": params["scorecard"]}
        deadline = time.monotonic() + 300
        while True:  # a new pid's command line is its starter's until it has exec'd the job
            pid = _job_pid()
            running = {k: _option(_cmdline(pid), k) for k in wanted} if pid else {}
            if pid != restarted["pid_before"] and running == wanted:
                break
            if time.monotonic() > deadline:
                raise AirflowFailException(
                    f"the streaming job did not come back with {wanted} within 300 s (pid "
                    f"{pid}: {running}; the check reads /proc/<pid>/cmdline on the job's host)"
                )
            time.sleep(2)
        end = time.monotonic() + params["settle_s"]
        while time.monotonic() < end:
            time.sleep(min(5, max(0.0, end - time.monotonic())))
            now = _job_pid()
            if now != pid:
                raise AirflowFailException(
                    f"the job (pid {pid}) ended within settle_s after the redeploy (now: pid "
                    f"{now}); read its log. To roll back, trigger callqa_redeploy with "
                    f"{restarted['previous']}"
                )
        print(f"the streaming job (pid {pid}) runs with {running}", flush=True)

    restarted = restart()
    validate() >> restarted
    came_back(restarted)


callqa_redeploy()
