"""``callqa bench capacity`` end to end, kept short: one level of one call for 30 s on the real
broker and Prism (the job as its own ``callqa run`` process), then the ASR ceiling. The table
has a row with transcript latencies, the ceiling is translated into calls, and the Iceberg
tables got at most one data file per commit interval."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from beam_jobs.bench.capacity import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_one_level_measures_latency_and_the_ceiling(
    kafka_bootstrap: str, prism_location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["--levels", "1", "--hold-s", "30", "--grace-s", "5", "--pool-minutes", "1.5",
               "--ceiling-speech-s", "20", f"--bootstrap-servers={kafka_bootstrap}"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+1\s+\d+\s", line)]
    assert len(rows) == 1, out
    _, utterances, p50, p95 = rows[0][:4]
    assert int(utterances) > 0 and 0 < float(p50) <= float(p95), out
    if shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists():
        stages = r"CPU by stage, cores over \d+ s \(py-spy, [\d,]+ samples\): \w"
        assert re.search(stages, out), out
    ceiling = re.search(r"ceiling: ([\d.]+) s of speech per s.* → ([\d.]+) calls", out)
    assert ceiling and float(ceiling[1]) > 0 and float(ceiling[2]) > 0, out
    assert re.search(r"capacity: \d+ calls = [\d.]+ of the ceiling", out), out
    floor = re.search(r"decode alone p50 ([\d.]+) s / p95 ([\d.]+) s \((\d+) utterances", out)
    assert floor and 0 < float(floor[1]) <= float(floor[2]) and int(floor[3]) > 0, out
    finals = re.search(r"\s\((\d+)(?:, (\d+) late)?\)\s", " ".join(rows[0]) + " ")
    assert finals, out
    written = int(finals[1]) - int(finals[2] or 0)  # calls that ended with a final row
    _the_tables_got_at_most_one_file_per_commit_interval(out, written)  # the default warehouse


def _the_tables_got_at_most_one_file_per_commit_interval(out: str, finals: int) -> None:
    assert "final p95 ≤ 15 s (Iceberg: 5 s + the commit interval)" in out, out
    table = out.split("warehouse: Iceberg commits over the run (commit interval 10 s)\n")[1]
    stats = {}
    for line in table.splitlines()[1:6]:
        name, commits, added, per_interval, _gap, _live = line.split()
        stats[name] = (int(commits), int(added), int(per_interval))
    assert set(stats) == {"calls", "transcripts", "scorecard_answers", "dead_letters",
                          "quarantine"}, out  # fmt: skip
    assert stats["transcripts"][0] >= 1, out  # how many depends on the machine's speed
    # final rows only (live ones go to the call-state topic): a commit once a call ended
    assert stats["calls"][0] >= 1 or finals == 0, out
    assert all(per <= 1 for _, _, per in stats.values()), out  # one day: one file an interval
    assert "callqa warehouse maintain (orphan grace 0: the job has stopped)" in out, out
