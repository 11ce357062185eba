"""``callqa`` dispatch: each subcommand reaches its handler, and the ones that own their options
(the jobs' Beam options, the benchmarks', the report's) get every argument after the subcommand
unchanged, ``--help`` and a bare ``--`` included."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from beam_jobs.cli import main


class _Capture:
    """Stands in for a delegated entry point: records the argv it got, returns ``rc``."""

    def __init__(self, rc: int = 0, raises: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.rc = rc
        self.raises = raises

    def __call__(self, argv: Sequence[str] = ()) -> int:
        self.calls.append(list(argv))
        if self.raises is not None:
            raise self.raises
        return self.rc


ARGS = ["--streaming", "--asr", "embedded", "--output_dir=out", "x", "--", "--late"]


@pytest.mark.parametrize(
    ("target", "argv", "expected"),
    [
        ("beam_jobs.pipeline.run", ["run", *ARGS], ARGS),
        ("beam_jobs.pipeline.run", ["run"], []),
        ("beam_jobs.batch.run_batch", ["batch", "--recordings=a/*.wav", "--reprocess"],
         ["--recordings=a/*.wav", "--reprocess"]),
        ("beam_jobs.report.report.report_main", ["report", "--from=2026-12-01", "-h"],
         ["--from=2026-12-01", "-h"]),
        ("beam_jobs.bench.ingest.main", ["bench", "ingest", "--calls", "4", "--help"],
         ["--calls", "4", "--help"]),
        ("beam_jobs.bench.batch.main", ["bench", "batch", "--minutes", "1", "--asr_beam_size=1"],
         ["--minutes", "1", "--asr_beam_size=1"]),
        ("beam_jobs.bench.capacity.main", ["bench", "capacity", "--levels", "2,4", "--",
         "--asr_beam_size=1"], ["--levels", "2,4", "--", "--asr_beam_size=1"]),
        # bench.asr parses its own asr|latency subcommand: it gets the word too
        ("beam_jobs.bench.asr.main", ["bench", "asr", "--repeat", "2"], ["asr", "--repeat", "2"]),
        ("beam_jobs.bench.asr.main", ["bench", "latency", "--", "--asr_beam_size=1"],
         ["latency", "--", "--asr_beam_size=1"]),
    ],
)  # fmt: skip
def test_delegated_subcommands_get_the_rest_unchanged(
    monkeypatch: pytest.MonkeyPatch, target: str, argv: list[str], expected: list[str]
) -> None:
    fake = _Capture(rc=3)
    monkeypatch.setattr(target, fake)
    assert main(argv) == 3
    assert fake.calls == [expected]


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["report", "--help"], "usage: callqa report "),
        (["bench", "ingest", "--help"], "usage: callqa bench ingest "),
        (["bench", "asr", "--help"], "usage: callqa bench asr|latency asr "),
        (["bench", "latency", "--help"], "usage: callqa bench asr|latency latency "),
        (["bench", "batch", "--help"], "usage: callqa bench batch "),
        (["bench", "capacity", "--help"], "usage: callqa bench capacity "),
    ],
)
def test_tool_help_is_the_tools_own(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(usage)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["bench"], "the following arguments are required: benchmark"),
        (["bench", "speed"], "invalid choice: 'speed'"),
        (["kafka", "status", "--bogus"], "unrecognized arguments: --bogus"),
        (["--bogus", "run"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2_with_usage(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: callqa") and message in err


@pytest.mark.parametrize("exc", [RuntimeError("no broker"), ValueError("no broker")])
@pytest.mark.parametrize(
    ("target", "argv"),
    [
        ("beam_jobs.pipeline.run", ["run", "--streaming"]),
        ("beam_jobs.batch.run_batch", ["batch"]),
        ("beam_jobs.services.local.prism_binary", ["prism"]),
    ],
)
def test_refusals_are_one_sentence_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: str,
    argv: list[str],
    exc: Exception,
) -> None:
    monkeypatch.setattr(target, _Capture(raises=exc))
    assert main(argv) == 2
    assert capsys.readouterr().err == "callqa: error: no broker\n"


def test_a_bare_double_dash_reaches_the_job_and_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--streaming", "--", "--asr=embedded"]) == 2
    assert "a bare '--' makes Beam drop every later option" in capsys.readouterr().err


def test_eval_refuses_a_missing_manifest_and_an_unknown_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path / "none.json")]) == 2
    assert "no such manifest (build one: callqa corpus build)" in capsys.readouterr().err
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"items": []}')
    assert main(["eval", str(manifest), "--asr", str(tmp_path), "--row", "nope"]) == 2
    assert "no such row ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "options"),
    [("run", ["--kafka_topic", "--asr", "--scorecard"]), ("batch", ["--recordings", "--asr"])],
)
def test_help_lists_the_jobs_own_options(
    command: str, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: callqa {command}")
    assert all(o in out for o in options), out
