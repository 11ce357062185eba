"""``callqa bench capacity`` end to end, kept short: one level of one call for 30 s on the real
broker and Prism (the job as its own ``callqa run`` process), then the ASR ceiling. The table
has a row with transcript latencies, and the ceiling is translated into calls."""

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
