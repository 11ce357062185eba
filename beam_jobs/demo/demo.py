"""``callqa demo``: the whole streaming path on embedded defaults, end to end.

Starts the local Kafka broker (installing it on first use), builds Prism if needed, speaks
the scripted demo calls (English, Mandarin, zh/en code-switched; the evaluation corpus's
voices), starts the streaming job with the embedded ASR model on Prism, then produces the
calls *while the job runs* (real-time pace, interleaved, plus a few malformed events) and
follows the live-transcripts topic. Before the job starts it measures this machine's ASR
speed on the calls' own speech and runs as many calls at once as the job holds in real time
here (``beam_jobs.demo.plan``), or says that the machine is too slow for one and by how much.
When every call has its final row it cancels the job and prints, read back from the Iceberg
tables with DuckDB: the call rows, each call's transcript scored against its script (WER /
CER / MER), the end-of-utterance → Kafka latency and the dead letters.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from beam_jobs import warehouse
from beam_jobs.ceiling import batched_speech_rate
from beam_jobs.config import DEFAULT_CALL_STATE_TOPIC, DEFAULT_TRANSCRIPTS_TOPIC
from beam_jobs.demo.calls import demo_calls
from beam_jobs.demo.live import LiveFollower, latencies_s, percentile, read_topic
from beam_jobs.demo.plan import MEASURE_SPEECH_S, DemoPlan, plan, start_times_ms, turn_utterances
from beam_jobs.demo.producer import call_events, interleave, new_producer, send_events
from beam_jobs.demo.speech import ScriptedCall
from beam_jobs.pipeline import job_config, submit
from beam_jobs.report.asr_eval import UNITS, error_counts
from beam_jobs.services.local import create_topic, default_broker, prism_binary
from schemas.audio import DEFAULT_CHUNK_MS
from schemas.records import Utterance
from transforms.analyze import AnalyzeOptions
from transforms.asr.options import AsrOptions
from transforms.core.segmentation import SegmentOptions
from transforms.core.text_analytics import redact_all

DEMO_MALFORMED = (
    ("bad-version", [("schema_version", b"99")], b"\x00\x00"),
    (
        "bad-codec",
        [("schema_version", b"1"), ("channel", b"agent"), ("seq", b"0"), ("codec", b"opus"),
         ("sample_rate_hz", b"16000"), ("channels", b"1")],
        b"\x00\x00",
    ),
    (
        "truncated",
        [("schema_version", b"1"), ("channel", b"agent"), ("seq", b"0"), ("codec", b"pcm_s16le"),
         ("sample_rate_hz", b"16000"), ("channels", b"1")],
        b"\x00\x00\x00",
    ),
)  # fmt: skip


def run_demo(output_dir: str, asr: str = "embedded") -> int:
    out = Path(output_dir)
    if out.exists():
        shutil.rmtree(out)
    broker = default_broker()
    print(f"[1/7] Kafka: starting on {broker.bootstrap_servers} (first run installs it) ...")
    broker.start()
    print(f"[2/7] Prism: {prism_binary()}")
    print("[3/7] the demo calls (English, Mandarin, zh/en code-switched; Kokoro + flite voices, "
          "synthesized on first use) ...")  # fmt: skip
    calls = demo_calls()
    topic = f"callqa.demo.{int(time.time())}"
    create_topic(broker.bootstrap_servers, topic, partitions=4)
    live_topic = f"{DEFAULT_TRANSCRIPTS_TOPIC}.{topic}"
    create_topic(broker.bootstrap_servers, live_topic, partitions=2)
    state_topic = f"{DEFAULT_CALL_STATE_TOPIC}.{topic}"  # the job creates it compacted
    argv = [
        "--streaming",
        f"--kafka_bootstrap_servers={broker.bootstrap_servers}",
        f"--kafka_topic={topic}",
        f"--kafka_group_id={topic}",
        f"--output_dir={out}",
        "--inactivity_gap_s=10",
        "--live_interval_s=4",
        f"--asr={asr}",
        f"--transcripts_topic={live_topic}",
        f"--call_state_topic={state_topic}",
    ]
    cfg = job_config(argv)
    concurrent = len(calls)
    if cfg.asr is not None:
        print("[4/7] measuring this machine's ASR speed on the demo's own speech ...")
        demo_plan = measure(cfg.asr, calls)
        print(f"      {demo_plan.summary()}")
        concurrent = demo_plan.concurrent
    print(f"[5/7] streaming job on Prism (ASR: {asr}): {topic} → {out}, live → {live_topic}, "
          f"call states → {state_topic}")  # fmt: skip
    result, _ = submit(argv)
    follower = LiveFollower(broker.bootstrap_servers, live_topic)
    try:
        durations = [len(c.audio.channels["agent"]) / c.audio.sample_rate_hz for c in calls]
        starts = start_times_ms(durations, concurrent, int(time.time() * 1000) + 3000)
        streams = [call_events(c.audio, t) for c, t in zip(calls, starts, strict=True)]
        total = sum(len(s) for s in streams)
        print(f"[6/7] producing {len(calls)} calls ({total} chunks, ~{max(durations):.0f} s each, "
              f"{max(1, concurrent)} at a time) at real-time pace ...")  # fmt: skip
        producer = new_producer(broker.bootstrap_servers)
        for key, headers, value in DEMO_MALFORMED:
            producer.send(topic, key=key.encode(), value=value, headers=headers)
        send_events(producer, topic, interleave(streams), realtime=True, total=total)
        t_produced = time.time()
        ids = [c.audio.call_id for c in calls]
        rows = warehouse.wait_for_final_calls(out, ids, timeout_s=180)
        t_final = time.time()
        _wait_for_last_turns(follower, calls, streams, timeout_s=90)
    finally:
        follower.close()
        # Cancelling tears the in-process SDK worker down mid-bundle: it prints the aborted
        # bundles' tracebacks to stderr. They are expected; keep them off the demo's output.
        for name in ("apache_beam.runners.worker", "PrismRunner"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        with contextlib.redirect_stderr(io.StringIO()):
            result.cancel()
            time.sleep(2)
    print(f"[7/7] job cancelled; last final row {t_final - t_produced:.1f} s after the last chunk")
    _print_calls(rows)
    _print_qa(rows)
    scored = _print_transcripts(out, calls)
    _print_latency(follower)
    states = read_topic(broker.bootstrap_servers, state_topic)
    live = sum(1 for e in states if not e["is_final"])
    dls = warehouse.dead_letters(out)
    print()
    print(
        f"final calls: {len(rows)}/{len(calls)}; live call states on Kafka: {live}; "
        f"live transcripts on Kafka: {len(follower.events)}; dead letters: {len(dls)}"
    )
    for dl in dls:
        print(f"  dead letter [{dl['stage']}/{dl['reason']}] key={dl['call_id']}: {dl['message']}")
    _print_report(out)
    print()
    print("Kafka keeps running for the next run: `callqa kafka stop` stops it.")
    print(
        f"Query it:  .venv/bin/callqa warehouse duckdb --output_dir {out} "
        '-c "SELECT call_id, channel, text FROM transcripts ORDER BY call_id, start_ms"'
    )
    return 0 if len(rows) == len(calls) and scored else 1


def measure(opts: AsrOptions, calls: list[ScriptedCall]) -> DemoPlan:
    """The plan for this machine: the backend batched by hand on the calls' own turns (with the
    VAD's padding, as the job cuts them), and the speech a call holds per second."""
    pad_s = 2 * SegmentOptions().speech_pad_ms / 1000
    utts: list[Utterance] = []
    for call in calls:
        turns = [(t.role, t.start_s, t.end_s) for t in call.turns]
        utts += turn_utterances(call.audio, turns, MEASURE_SPEECH_S / len(calls))
    speech_s = sum(t.end_s - t.start_s + pad_s for c in calls for t in c.turns)
    call_s = sum(len(c.audio.channels["agent"]) / c.audio.sample_rate_hz for c in calls)
    return plan(batched_speech_rate(opts, utts), speech_s / call_s, len(calls))


def _wait_for_last_turns(
    follower: LiveFollower, calls: list[Any], streams: list[list[Any]], timeout_s: float
) -> None:
    """Until each channel's last scripted turn has a live transcript (ASR may lag the audio)."""
    wanted: dict[tuple[str, str], int] = {}
    for call, events in zip(calls, streams, strict=True):
        t0 = events[0].capture_time_ms
        for turn in call.turns:
            wanted[(call.audio.call_id, turn.role)] = t0 + int(turn.start_s * 1000)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done: dict[tuple[str, str], int] = {}
        for _, e in list(follower.events):
            key = (e["call_id"], e["channel"])
            done[key] = max(done.get(key, 0), e["end_ms"])
        if all(done.get(k, 0) > start for k, start in wanted.items()):
            return
        time.sleep(0.3)


def _print_calls(rows: dict[str, dict[str, Any]]) -> None:
    print()
    print(f"{'call':<18}{'ver':>4}{'reason':>13}{'agent_s':>9}{'cust_s':>8}{'chunks':>8}"
          f"{'gaps':>6}")  # fmt: skip
    for r in rows.values():
        print(
            f"{r['call_id']:<18}{r['version']:>4}{r['close_reason']:>13}"
            f"{r['agent_audio_s']:>9.1f}{r['customer_audio_s']:>8.1f}"
            f"{r['chunk_count']:>8}{r['missing_seq_count']:>6}"
        )


def _print_report(out: Path) -> None:
    from beam_jobs.report.report import build_report, data_date_range

    span = data_date_range(out)
    if span is None:
        return
    report = build_report(out, span[0], span[1], out / "report")
    print()
    print(f"report: {report.report_path}")
    print(f"summary: {json.dumps(report.summary, ensure_ascii=False)}")


def _print_qa(rows: dict[str, dict[str, Any]]) -> None:
    """The QA metrics and scorecard of each final row (absent without ASR)."""
    print()
    print(f"{'call':<18}{'talk%':>6}{'dead_air_s':>11}{'overtalk':>9}{'interr':>7}"
          f"{'sentiment':>10}{'score':>8}  failed questions; keywords")  # fmt: skip
    for r in rows.values():
        m, card = r.get("metrics"), r.get("scorecard")
        if m is None:
            continue
        ratio = "-" if m["agent_talk_ratio"] is None else f"{100 * m['agent_talk_ratio']:.0f}"
        sent = "-" if m["sentiment"] is None else f"{m['sentiment']:+.2f}"
        score = "-" if card is None else f"{card['score']:g}/{card['potential']:g}"
        failed = [] if card is None else [a["question_id"] for a in card["answers"]
                                          if not a["passed"]]  # fmt: skip
        interruptions = m["interruptions_by_agent"] + m["interruptions_by_customer"]
        print(
            f"{r['call_id']:<18}{ratio:>6}{m['longest_non_talk_s']:>11.1f}"
            f"{m['overtalk_ms'] / 1000:>8.1f}s{interruptions:>7}{sent:>10}{score:>8}  "
            f"{', '.join(failed) or '-'}; {' '.join(m['keywords'][:5])}"
        )


def _print_transcripts(out: Path, calls: list[Any]) -> bool:
    """Each call's transcript beside its script and error rate; True when all have text.
    The transcripts are stored redacted, so each turn of the script is redacted the same way
    (the job's defaults) before scoring: a number heard right and redacted is no error."""
    rows = warehouse.transcripts(out)
    digits = AnalyzeOptions().redact_numbers_min_digits
    pooled: dict[str, list[int]] = {}
    complete = True
    for call in calls:
        cid = call.audio.call_id
        mine = [r for r in rows if r["call_id"] == cid]
        hypothesis = " ".join(r["text"] for r in mine)
        reference, _ = redact_all([t.text for t in call.turns], digits)
        errors, n = error_counts(" ".join(reference), hypothesis)
        unit = UNITS[call.language]
        pooled.setdefault(unit, [0, 0])
        pooled[unit][0] += errors
        pooled[unit][1] += n
        complete &= bool(mine)
        print()
        print(f"── {cid} ({call.language}) {unit} {errors / max(1, n):.3f} "
              f"({len(mine)} utterances) ──")  # fmt: skip
        for r in mine:
            t_s = (r["start_ms"] - mine[0]["start_ms"]) / 1000
            print(f"  {t_s:5.1f}s {r['channel']:<8} [{r['language_class'] or '-':>5}] {r['text']}")
        print(f"  script: {call.reference()}")
    print()
    print("error rates over the demo calls: " + ", ".join(
        f"{unit} {e / max(1, n):.3f} ({n} tokens)" for unit, (e, n) in pooled.items()
    ))  # fmt: skip
    return complete


def _print_latency(follower: LiveFollower) -> None:
    lat = latencies_s(follower.events, DEFAULT_CHUNK_MS)
    if lat:
        print(f"end of utterance → transcript on Kafka: p50 {percentile(lat, 0.5):.2f} s, "
              f"p95 {percentile(lat, 0.95):.2f} s over {len(lat)} utterances")  # fmt: skip
