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


@pytest.mark.parametrize(
    ("asr_args", "message"),
    [
        (["--asr={tmp}/missing"], "does not exist; run `callqa models install`"),
        (["--asr={tmp}/orig"], "original layout (config.json has thinker_config)"),
        (["--asr=embedded", "--asr_max_alternatives=2", "--asr_enable_word_timestamps"],
         "cannot be combined with word timestamps"),
        (["--asr={tmp}/orig-hf", "--asr_enable_word_timestamps"], "faster-whisper backend only"),
    ],
)  # fmt: skip
def test_bad_asr_setups_are_refused_before_submission(
    asr_args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "config.json").write_text(
        '{"model_type": "qwen3_asr", "thinker_config": {}}'
    )
    (tmp_path / "orig-hf").mkdir()
    (tmp_path / "orig-hf" / "config.json").write_text('{"model_type": "qwen3_asr"}')
    args = [a.format(tmp=tmp_path) for a in asr_args]
    assert main(["run", "--streaming", f"--output_dir={tmp_path}/out", *args]) == 2
    assert message in capsys.readouterr().err
