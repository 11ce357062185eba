"""The corpus's Mandarin calls (Kokoro voices) through the streaming job on Prism, produced to
the real Kafka broker, with the embedded ASR model and live transcripts on: a billing complaint
with an identity check that reads out a mobile number in digits and an ID number in Chinese
numerals, a hold and a closing; and an angry outage complaint.

Every turn of the billing call comes back as simplified Mandarin; its greeting, hold and
closing questions pass; its jieba keywords are the call's words; numbers are redacted, and no
digit string that holds a valid mobile or ID number, nor any unvalidated run of 9 digits or
more (what the ASR made of one: ``--redact_numbers_min_digits``), reaches the warehouse or the
live topic, which carries the warehouse's texts; the angry customer's sentiment is negative
and below the billing one's. Not yet asserted (the embedded Whisper base mishears these
accented voices: docs/asr.md): the identity question, and the ID redacted whole when the model
splits it over two utterances (its shorter part stays)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.corpus.build import load_calls
from beam_jobs.demo.live import LiveFollower
from beam_jobs.demo.producer import call_events, interleave, new_producer, send_events
from beam_jobs.services.local import create_topic, unique_name
from tests.integration.harness import job_args, streaming_job
from transforms.core.script import to_script
from transforms.core.text_analytics import digit_form, is_cn_id, is_cn_mobile
from transforms.io.recordings import CallAudio

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_mandarin_calls_are_transcribed_scored_and_redacted_through_the_streaming_job(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path, ci_corpus: Path
) -> None:
    calls = {c.call_id: c for c in load_calls(ci_corpus) if c.language == "zh"}
    call = calls["zh-bill"]
    out = tmp_path / "out"
    live = unique_name("callqa-test-live")
    create_topic(kafka_bootstrap, live, partitions=1)
    argv = job_args(kafka_bootstrap, topic, out, prism_location, "--asr=embedded",
                    "--live_interval_s=0", f"--transcripts_topic={live}")  # fmt: skip
    follower = LiveFollower(kafka_bootstrap, live)
    try:
        with streaming_job(argv):
            producer = new_producer(kafka_bootstrap)
            start_ms = int(time.time() * 1000) - 120_000
            streams = [
                call_events(
                    CallAudio(c.call_id, c.rate_hz, c.channels, language_hint="zh"), start_ms
                )  # fmt: skip
                for c in calls.values()
            ]
            send_events(producer, topic, interleave(streams), realtime=False, progress=False)
            producer.close()
            rows = warehouse.wait_for_final_calls(out, list(calls), timeout_s=420, settle_s=5)
            stored = [t for t in warehouse.transcripts(out) if t["call_id"] == call.call_id]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(
                {
                    (e["channel"], e["start_ms"])
                    for _, e in follower.events
                    if e["call_id"] == call.call_id
                }  # fmt: skip
            ) < len(stored):
                time.sleep(0.5)
    finally:
        follower.close()

    row = rows[call.call_id]
    answers = {a["question_id"]: a["passed"] for a in row["scorecard"]["answers"]}
    texts = [t["text"] for t in stored]
    print("answers", answers, "\ntranscripts", texts)
    assert abs(len(stored) - len(call.segments)) <= 2, texts  # the VAD's cuts, not the script's
    assert all(t["language"] == "zh" for t in stored)
    assert all(to_script(t, "simplified") == t for t in texts), texts  # --asr_zh_script default
    for question in ("greeting", "hold_handling", "closing"):
        assert answers[question], (question, texts)
    # Whatever digits the model wrote, none that make a valid mobile or ID number survive,
    # in the warehouse or on Kafka; the live topic carries the same (redacted) texts.
    assert not _valid_numbers(texts), texts
    assert sum(t["pii_redactions"] for t in stored) >= 1, texts
    assert not [t for t in texts if re.search(r"\d{9,}", re.sub(r"[\s,.\-]", "", digit_form(t)))]
    live = {(e["channel"], e["start_ms"]): e["text"] for _, e in follower.events
            if e["call_id"] == call.call_id}  # fmt: skip
    assert live == {(t["channel"], t["start_ms"]): t["text"] for t in stored}
    # jieba keywords of the Mandarin call; the angry outage complaint reads as negative.
    billing, angry = row["metrics"], rows["zh-broadband"]["metrics"]
    assert set(billing["keywords"]) & {"客服", "话费", "身份", "手机", "号码", "业务费", "退回"}
    print("customer sentiment: billing", billing["customer_sentiment"], "angry",
          angry["customer_sentiment"], angry["keywords"])  # fmt: skip
    assert angry["customer_sentiment"] < 0
    assert angry["customer_sentiment"] < billing["customer_sentiment"]


def _valid_numbers(texts: list[str]) -> list[str]:
    """Digit strings in ``texts`` (separators dropped) that hold a mobile or ID number."""
    found = []
    for t in texts:
        digits = re.sub(r"[\s,.\-]", "", digit_form(t))
        for run in re.findall(r"\d{11,}[Xx]?", digits):
            windows = [run[i : i + n] for n in (11, 18) for i in range(len(run) - n + 1)]
            found += [w for w in windows if is_cn_id(w) or is_cn_mobile(w)]
    return found
