"""The Airflow DAGs of ``deploy/airflow``, run by ``dag.test()`` in Airflow's own environment
(``deploy/lock/airflow.txt``) with the job through this checkout's CLI on Prism.

``callqa_nightly`` for a logical date processes exactly its data interval's day of recordings,
writes that day's report, and adds nothing when the same date runs again (the batch job skips
calls already final). ``callqa_redeploy`` refuses settings that fail its canary batch run
without touching the job, and restarts a stand-in job (a process whose command line carries
the options, as the systemd unit's does) with good ones, checking it came back with them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beam_jobs import warehouse
from beam_jobs.services.local import locked_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAY = "2025-11-25"  # the recordings' day: the data interval of a run at 2025-11-26T02:00Z
LOGICAL_DATE = "2025-11-26T02:00:00+00:00"
MTIME_S = 1_764_072_000  # 2025-11-25T12:00:00Z: the recorder closed the files then

# Runs in Airflow's environment: load the DAG file, then dag.test() each run of argv[2] (a JSON
# list of [dag_id, logical date or null, conf]) and print one RESULT line per run.
DRIVER = """
import json, sys
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
errors = {k: str(v) for k, v in bag.import_errors.items()}
for dag_id, logical_date, conf in json.loads(sys.argv[2]):
    dag = bag.get_dag(dag_id)
    for t in (dag.tasks if dag else []):  # a failure fails the test, not a retry much later
        t.retries = 0
    when = datetime.fromisoformat(logical_date) if logical_date else datetime.now().astimezone()
    run = dag.test(logical_date=when, run_conf=conf) if dag else None
    print("RESULT " + json.dumps({
        "import_errors": errors,
        "dags": sorted(bag.dag_ids),
        "state": str(run.state) if run else None,
        "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()} if run else {},
    }), flush=True)
"""


@pytest.fixture
def airflow(prism_location: str, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """Airflow's python and the environment of a fresh Airflow home (SQLite, migrated) whose
    Variables run the job as ``python -m beam_jobs.cli`` from this checkout on Prism."""
    python = locked_environment("airflow")
    home = tmp_path / "airflow"
    home.mkdir()
    prism = ["--runner=PrismRunner", f"--prism_location={prism_location}"]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "deploy" / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # the job through this checkout's code in the job's environment (the cwd is ROOT)
        "AIRFLOW_VAR_CALLQA_CLI": f"{sys.executable} -m beam_jobs.cli",
        "AIRFLOW_VAR_CALLQA_BATCH_OPTIONS": json.dumps(
            [*prism, "--asr=embedded", "--ceiling_sample_s=0"]
        ),
        "AIRFLOW_VAR_CALLQA_CANARY_OPTIONS": json.dumps(prism),
    }
    migrate = subprocess.run(
        [str(python), "-m", "airflow", "db", "migrate"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    yield python, env


def _recordings(rec: Path) -> None:
    """Two calls of DAY (a spoken one, a tone), a file of DAY that is no audio, and a call of
    the next day, which must wait."""
    from beam_jobs.demo.speech import Turn, scripted_call

    call = scripted_call("night-spoken", "en", (
        Turn("agent", "Thank you for calling, how can I help you?"),
        Turn("customer", "I would like a refund for my order please."),
    ))  # fmt: skip
    day, later = rec / DAY, rec / "2025-11-26"
    day.mkdir(parents=True)
    later.mkdir()
    stereo = np.stack([call.audio.channels["agent"], call.audio.channels["customer"]], 1)
    sf.write(day / "night-spoken.wav", stereo, 16000)
    t = np.arange(16000 * 2) / 16000
    sf.write(day / "night-tone.wav", (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
    (day / "night-broken.wav").write_bytes(b"RIFF but not really audio")
    sf.write(later / "next-day.wav", np.zeros(16000, np.float32), 16000)
    for f in (*day.iterdir(), *later.iterdir()):
        os.utime(f, (MTIME_S, MTIME_S))


def _dag_test(
    airflow: tuple[Path, dict[str, str]],
    runs: list[tuple[str, str | None, dict[str, object]]],
    log: Path,
) -> list[dict[str, object]]:
    """``dag.test()`` of each run (dag id, logical date, conf) in one Airflow process; its log
    in ``log``."""
    python, env = airflow
    driver = log.with_suffix(".py")
    driver.write_text(DRIVER)
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(python), str(driver), str(ROOT / "deploy" / "airflow"), json.dumps(runs)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=480)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the task's child job goes with it (run_cli's finally)
            proc.wait(timeout=60)
    text = log.read_text()
    results = [json.loads(x[7:]) for x in text.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and len(results) == len(runs), text[-6000:]
    for result in results:
        assert result["import_errors"] == {}, result
        assert result["dags"] == ["callqa_nightly", "callqa_redeploy"], result
    return results


def test_nightly_dag_runs_the_batch_job_and_the_report(
    airflow: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    rec, out = tmp_path / "rec", tmp_path / "out"
    _recordings(rec)
    airflow[1]["AIRFLOW_VAR_CALLQA_RECORDINGS"] = f"{rec}/{{day}}/*"
    airflow[1]["AIRFLOW_VAR_CALLQA_BATCH_OUTPUT_DIR"] = str(out)
    nightly = [("callqa_nightly", LOGICAL_DATE, {})]

    (first,) = _dag_test(airflow, nightly, tmp_path / "first.log")

    # the unreadable file is not retried: the report runs, then the run fails naming it
    assert first["state"] == "failed", first
    assert first["tasks"] == {
        "batch": "success", "report": "success", "every_file_processed": "failed",
    }  # fmt: skip
    rows = {r["call_id"]: r for r in warehouse.final_calls(out)}
    assert sorted(rows) == ["night-spoken", "night-tone"]  # not the next day's
    spoken, tone = rows["night-spoken"]["metrics"], rows["night-tone"]["metrics"]
    assert spoken["transcripts_complete"] and spoken["utterance_count"] == 2, spoken
    assert spoken["agent_talk_s"] > 0 and spoken["customer_talk_s"] > 0, spoken
    assert rows["night-spoken"]["scorecard"]["answers"], rows["night-spoken"]
    assert tone["transcripts_complete"] and tone["transcript_failures"] == 0, tone
    texts = " ".join(r["text"].lower() for r in warehouse.transcripts(out))
    assert "refund" in texts, texts
    report = out / "reports" / DAY
    summary = json.loads((report / "summary.json").read_text())
    assert summary["total_calls"] == 2 and summary["date_range"] == [DAY, DAY], summary
    assert ["refund", 1] in summary["top_keywords"], summary
    html = (report / "report.html").read_text()
    assert "night-spoken" in html and "night-tone" in html
    assert sorted(p.name for p in (report / "calls").iterdir()) == [
        "night-spoken.html", "night-tone.html",
    ]  # fmt: skip
    failure = next(x for x in (tmp_path / "first.log").read_text().splitlines() if "1 rec" in x)
    assert f"1 recordings of {DAY} are dead letters" in failure and "night-broken.wav" in failure
    counts = [len(warehouse.all_call_rows(out)), len(warehouse.transcripts(out))]

    (second,) = _dag_test(airflow, nightly, tmp_path / "second.log")  # the same date again

    assert (second["state"], second["tasks"]) == (first["state"], first["tasks"])
    assert [len(warehouse.all_call_rows(out)), len(warehouse.transcripts(out))] == counts
    assert warehouse.duplicate_final_rows(out) == []
    letters = [(d["call_id"], d["reason"]) for d in warehouse.dead_letters(out)]
    assert letters == [("night-broken", "unreadable_audio")]  # run again, not stored again
    batch = json.loads((out / "batch_summaries" / f"{DAY}.json").read_text())
    status = {f["call_id"]: f["status"] for f in batch["files"]}
    assert status == {"night-spoken": "skipped", "night-tone": "skipped", "night-broken": "failed"}


FAKE_JOB = """setsid python3 -c 'import time; time.sleep(600)' streaming-job \\
  --asr="$CALLQA_ASR" --scorecard="$CALLQA_SCORECARD" </dev/null >/dev/null 2>&1 &
echo $! > {pidfile}"""


def test_redeploy_dag_validates_then_restarts_the_job(
    airflow: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    pidfile = tmp_path / "job.pid"
    env = airflow[1]
    # the restart command of a supervisor-less deploy: stop the old process, start the new one
    env["AIRFLOW_VAR_CALLQA_RESTART_COMMAND"] = (
        f"[ -s {pidfile} ] && kill $(cat {pidfile}); " + FAKE_JOB.format(pidfile=pidfile)
    )
    env["AIRFLOW_VAR_CALLQA_JOB_PID_COMMAND"] = f"cat {pidfile} 2>/dev/null || echo 0"
    old = {"CALLQA_ASR": "embedded", "CALLQA_SCORECARD": "default"}
    subprocess.run(["sh", "-c", FAKE_JOB.format(pidfile=pidfile)], env={**os.environ, **old},
                   check=True)  # fmt: skip
    first_pid = int(pidfile.read_text())
    bad_card = tmp_path / "bad.yaml"
    bad_card.write_text("questions: [{id: greeting, rule: no_such_rule}]\n")
    try:
        bad, good = _dag_test(airflow, [
            ("callqa_redeploy", None, {"asr": "off", "scorecard": str(bad_card), "settle_s": 3}),
            ("callqa_redeploy", None, {"asr": "off", "scorecard": "off", "settle_s": 3}),
        ], tmp_path / "redeploy.log")  # fmt: skip
        new_pid = int(pidfile.read_text())
        argv = Path(f"/proc/{new_pid}/cmdline").read_bytes().split(b"\0")
    finally:
        for pid in {first_pid, int(pidfile.read_text())}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    assert bad["state"] == "failed", bad
    assert bad["tasks"] == {
        "validate": "failed", "restart": "upstream_failed", "came_back": "upstream_failed",
    }  # fmt: skip
    assert good["state"] == "success", good
    assert new_pid != first_pid
    assert b"--asr=off" in argv and b"--scorecard=off" in argv, argv
