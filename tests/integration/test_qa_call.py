"""A scripted two-party call with planned timings (a greeting, a 7 s silence, a 1.5 s overtalk
by the agent, a forbidden word, a phone number), spoken by espeak-ng, produced to the real
Kafka broker while the streaming job runs on Prism with the embedded ASR model: its final row
carries metrics within ±10 % of the plan, the expected scorecard answers, and the phone number
is redacted in the transcripts Parquet."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.producer import call_events, new_producer, send_events
from beam_jobs.speech import Turn, scripted_call
from tests.integration.harness import job_args, streaming_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, C = "agent", "customer"
# A Chinese mobile number read out in groups: caught whatever grouping or punctuation ASR
# writes it with (a bare 10-digit North-American number only after a phone word). No zeros:
# in the pipeline the embedded model heard espeak's "zero" as "Nero" in 3 of 4 runs.
PHONE = "one three nine, one two three four, five six seven eight"
SCRIPT = (
    Turn(A, "Good morning, thank you for calling. How can I help you?"),
    Turn(C, "Hi, I would like to change the phone number on my account."),
    Turn(A, "Sure. Can you please verify your date of birth?"),
    Turn(C, "It is the fourth of July, nineteen ninety."),
    Turn(A, "Thank you. Please hold for a moment while I check."),
    Turn(A, "Thank you for waiting. What is the new number?", 7.0),  # 7 s of dead air
    Turn(C, f"My new number is {PHONE}. Please write it down carefully."),
    Turn(A, "Okay, got it. This stupid system is slow today.", -1.5),  # 1.5 s overtalk
    Turn(C, "No problem."),
    Turn(A, "Is there anything else I can help you with?"),
    Turn(C, "No, that is all. Thank you."),
    Turn(A, "Thank you for calling. Have a nice day, goodbye."),
)


def within(measured: float, planned: float, tolerance: float = 0.10) -> bool:
    return abs(measured - planned) <= tolerance * planned


def test_scripted_call_metrics_scorecard_and_redaction(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    call = scripted_call("qa-plan-1", "en", SCRIPT, language_hint="en")
    turns = call.turns
    plan_silence_s = turns[5].start_s - turns[4].end_s
    plan_overtalk_s = turns[6].end_s - turns[7].start_s
    plan_talk = {r: sum(t.end_s - t.start_s for t in turns if t.role == r) for r in (A, C)}
    assert abs(plan_silence_s - 7.0) < 0.01 and abs(plan_overtalk_s - 1.5) < 0.01

    out = tmp_path / "out"
    argv = job_args(kafka_bootstrap, topic, out, prism_location, "--asr=embedded",
                    "--live_interval_s=0", "--transcripts_topic=off")  # fmt: skip
    with streaming_job(argv):
        producer = new_producer(kafka_bootstrap)
        events = call_events(call.audio, int(time.time() * 1000) - 120_000)
        send_events(producer, topic, events, realtime=False, progress=False)
        producer.close()
        # The row a consumer keeps: the highest version, once no newer one comes (a late
        # transcript would bring a v2 a few seconds after v1).
        rows = warehouse.wait_for_final_calls(out, ["qa-plan-1"], timeout_s=240, settle_s=10)
    row = rows["qa-plan-1"]
    print("version", row["version"], row["close_reason"])
    m, card = row["metrics"], row["scorecard"]
    shown = ("longest_non_talk_s", "overtalk_ms", "agent_talk_s", "customer_talk_s", "turn_count")
    print({k: m[k] for k in shown})
    assert m["transcripts_complete"] and m["utterance_count"] >= len(SCRIPT) - 1
    assert m["non_talk_count"] >= 1 and within(m["longest_non_talk_s"], plan_silence_s), m
    assert m["overtalk_count"] == 1 and within(m["overtalk_ms"] / 1000, plan_overtalk_s), m
    assert (m["interruptions_by_agent"], m["interruptions_by_customer"]) == (1, 0)
    assert within(m["agent_talk_s"], plan_talk[A]) and within(m["customer_talk_s"], plan_talk[C])
    assert m["pii_redactions"] >= 1

    answers = {a["question_id"]: a for a in card["answers"]}
    assert answers["greeting"]["passed"], answers["greeting"]
    assert answers["identity_verification"]["passed"]
    assert answers["hold_handling"]["passed"]
    assert answers["closing"]["passed"]
    assert not answers["no_forbidden_words"]["passed"]
    assert "stupid" in answers["no_forbidden_words"]["evidence"].lower()
    assert 0 < card["score"] < card["potential"]

    assert not list((out / "quarantine").rglob("*.parquet")), "real rows failed their suites"
    texts = [t["text"] for t in warehouse.transcripts(out) if t["call_id"] == "qa-plan-1"]
    joined = " ".join(texts)
    assert "[PHONE]" in joined, texts
    digits = "".join(ch for ch in joined if ch.isdigit())
    assert "13912345678" not in digits and "5678" not in digits, texts
