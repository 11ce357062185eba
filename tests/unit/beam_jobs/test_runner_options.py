"""Runner options the jobs add: a local Prism binary, no bundle splits, and job streams that
outlive Beam's 300 s default deadline (a bounded run longer than that failed in
wait_until_finish)."""

from __future__ import annotations

from beam_jobs.runner import JOB_STREAM_DEADLINE_S, NO_SPLITS_EXPERIMENT, runner_options


def test_prism_gets_its_binary_no_splits_and_no_job_stream_deadline() -> None:
    args = runner_options(["--prism_location=/opt/prism"])
    assert "--runner=PrismRunner" in args and "--prism_location=/opt/prism" in args
    assert f"--experiments={NO_SPLITS_EXPERIMENT}" in args
    assert f"--job_server_timeout={JOB_STREAM_DEADLINE_S}" in args
    assert JOB_STREAM_DEADLINE_S >= 365 * 24 * 3600


def test_a_chosen_timeout_or_job_endpoint_is_left_alone() -> None:
    args = runner_options(["--prism_location=/opt/prism", "--job_server_timeout=60"])
    assert [a for a in args if "job_server_timeout" in a] == ["--job_server_timeout=60"]
    flink = runner_options(["--runner=FlinkRunner", "--job_endpoint=localhost:8099"])
    assert not any("job_server_timeout" in a for a in flink)
    assert f"--job_server_timeout={JOB_STREAM_DEADLINE_S}" in runner_options(
        ["--runner=FlinkRunner"]
    )


def test_other_runners_are_untouched() -> None:
    assert runner_options(["--runner=DirectRunner"]) == ["--runner=DirectRunner"]
