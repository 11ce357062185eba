"""Bad setups fail before the job is submitted, with one sentence that says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from beam_jobs.cli import main

pytestmark = pytest.mark.integration


def test_missing_topic_is_reported(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["run", "--bounded", f"--kafka_bootstrap_servers={kafka_bootstrap}",
               "--kafka_topic=no-such-topic", f"--output_dir={tmp_path}"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "topic 'no-such-topic' does not exist" in err and "create-topic" in err


def test_unreachable_broker_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--bounded", "--kafka_bootstrap_servers=127.0.0.1:1",
               f"--output_dir={tmp_path}"])  # fmt: skip
    assert rc == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in capsys.readouterr().err


def test_unbounded_read_without_streaming_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "needs --streaming" in capsys.readouterr().err
