"""Upgrading the streaming job: stop it mid-stream the way an operator does (SIGTERM: the
runner cancels the job), start the new version, here a new scorecard, on the same topic,
consumer group and warehouse. The new version resumes from the committed delivery ledger:
every produced call has exactly one final row with all of its chunks (0 lost, 0 duplicated),
the calls final before the stop keep the old scorecard, and every call final after it, the
ones open at the stop included, is scored by the new one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.bench.capacity import start_job, stop_job
from beam_jobs.demo.producer import synthetic_call
from tests.integration.harness import (
    assert_each_call_once,
    job_args,
    produce_calls,
    wait_until,
    warm_up,
)
from transforms.core import scorecard

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_upgrade_to_a_new_scorecard_loses_and_duplicates_nothing(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    new_card = tmp_path / "scorecard-v2.yaml"
    packaged = Path(scorecard.__file__).with_name("scorecards") / "default.yaml"
    new_card.write_text(packaged.read_text().replace("name: default\n", "name: default-v2\n"))
    # short calls close (and are committed) while the long ones are still streaming at the stop:
    # long enough for a loaded machine, where a short call's final row came 20 s after its end
    durations = [40.0, 3.0, 3.5, 38.0, 2.5, 4.0, 36.0, 3.0]
    calls = [synthetic_call(f"up-{i:02d}", d, seed=i) for i, d in enumerate(durations)]
    argv = job_args(
        kafka_bootstrap, topic, out, prism_location,
        "--asr=embedded", "--transcripts_topic=off", "--inactivity_gap_s=3", "--live_interval_s=0",
        "--allowed_lateness_s=1", "--commit_interval_s=0.5", "--warehouse_commit_interval_s=1",
    )  # fmt: skip
    sent: dict[str, int] = {}
    producing = threading.Thread(
        target=lambda: sent.update(
            produce_calls(kafka_bootstrap, topic, calls, int(time.time() * 1000) + 3000, 600)
        ),
        daemon=True,
    )
    log = tmp_path / "job.log"
    job = start_job([*argv, "--scorecard=default"], log)
    try:
        sent |= warm_up(kafka_bootstrap, topic, out, log, alive=lambda: job.poll() is None)
        producing.start()
        wait_until("fewer than 3 of the stream's calls final",
                   lambda: len(warehouse.final_calls(out)) >= 4, 120, log,
                   alive=lambda: job.poll() is None)  # fmt: skip
        streaming = producing.is_alive()
        stop_job(job)  # SIGTERM to the job's process group, as systemd or the supervisor sends
        old = {r["call_id"]: r["scorecard"]["scorecard"] for r in warehouse.final_calls(out)}
        # calls of the stream still open in the job at the stop (the warm-up is one of old)
        assert 4 <= len(old) <= len(calls), f"the stop must come mid-stream: {sorted(old)}"
        print(f"stopped with {len(old)} calls final; the producer still sending: {streaming}")

        job = start_job([*argv, f"--scorecard={new_card}"], log)
        producing.join(timeout=120)
        assert sent, "the producer did not finish"
        wait_until("not every call is final after the upgrade",
                   lambda: sent.keys() <= {r["call_id"] for r in warehouse.final_calls(out)},
                   300, log, alive=lambda: job.poll() is None)  # fmt: skip
        rows = {r["call_id"]: r for r in warehouse.final_calls(out)}
    finally:
        stop_job(job)
    assert_each_call_once(out, sent, log.read_text())
    cards = {cid: r["scorecard"]["scorecard"] for cid, r in rows.items()}
    print(f"final before the stop: {len(old)} calls; after it: {len(cards) - len(old)}")
    assert {cid: cards[cid] for cid in old} == old, "a call final before the stop was redone"
    assert set(old.values()) == {"default"}
    assert {cards[cid] for cid in cards.keys() - old.keys()} == {"default-v2"}
