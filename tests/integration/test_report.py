"""``build_report`` / ``report_main`` on a small real warehouse, and the HTML in headless Chromium.

The warehouse is written with the job's own sink helpers; the expected summary is computed from
the Parquet files with pyarrow, independently of the report's DuckDB queries.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from beam_jobs.report.report import ReportSummary, build_report, page_name, report_main
from schemas.records import (
    CallMetrics,
    CallRow,
    ScorecardAnswer,
    ScorecardResult,
    Transcript,
)
from schemas.tables import CALLS, TRANSCRIPTS
from tests.records import call_metrics, call_row
from transforms.core.text_analytics import top_keywords_across
from transforms.io.parquet_sink import call_file, transcript_file, write_rows_file

pytestmark = [pytest.mark.integration]

DAY1, DAY2 = date(2024, 5, 1), date(2024, 5, 2)
QUESTIONS = ("greeting", "no_forbidden_words", "resolution")


def _ms(day: date, hour: int, minute: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def _metrics(duration_s: float, sentiment: float, ratio: float, gap_s: float) -> CallMetrics:
    return call_metrics(
        duration_s=duration_s, agent_talk_s=duration_s * ratio * 0.8,
        customer_talk_s=duration_s * (1 - ratio) * 0.8, agent_talk_ratio=ratio,
        non_talk_s=gap_s * 2, non_talk_count=2, longest_non_talk_s=gap_s, overtalk_count=1,
        overtalk_ms=800, interruptions_by_customer=1, agent_words_per_min=None,
        customer_words_per_min=None, customer_loudness_dbfs=-24.0, turn_count=4,
        utterance_count=4, keywords=("退款", "订单"), sentiment=sentiment,
        agent_sentiment=sentiment, customer_sentiment=sentiment, zh_share=0.5, en_share=0.5,
        zh_en_share=0.0, mean_confidence=-0.3, min_confidence=-0.9,
    )  # fmt: skip


def _card(passed: str, start_ms: int) -> ScorecardResult:
    """``passed``: "1", "0" or "-" (not applicable) per question of ``QUESTIONS``."""
    answers = tuple(
        ScorecardAnswer(q, None, 0.0, 0.0, "not applicable: …", None)
        if ok == "-"
        else ScorecardAnswer(q, ok == "1", float(ok), 1.0, f"evidence <{q}>", start_ms + 1000)
        for q, ok in zip(QUESTIONS, passed, strict=True)
    )
    score, potential = sum(a.points for a in answers), sum(a.potential for a in answers)
    return ScorecardResult("default", score, potential, score / potential, answers)


def _call(
    call_id: str,
    start_ms: int,
    length_s: int,
    version: int = 1,
    final: bool = True,
    metrics: CallMetrics | None = None,
    card: ScorecardResult | None = None,
) -> CallRow:
    return call_row(
        call_id=call_id, version=version, is_final=final,
        close_reason="end_of_call" if final else "live", start_ms=start_ms,
        end_ms=start_ms + length_s * 1000, agent_audio_s=length_s / 2,
        customer_audio_s=length_s / 2, chunk_count=10, duplicate_chunks=0, agent_id="agent-7",
        source_topic="calls", source_partition=0, first_offset=0, last_offset=9 + version,
        metrics=metrics, scorecard=card,
    )  # fmt: skip


def _turns(call_id: str, start_ms: int, texts: list[tuple[str, str, float]]) -> list[Transcript]:
    return [
        Transcript(call_id, channel, start_ms + i * 5000, start_ms + i * 5000 + 4000, text,
                   "zh" if not text.isascii() else "en", "zh" if not text.isascii() else "en",
                   -0.2, "tiny", "faster-whisper", (), (), -20.0, score, 0)
        for i, (channel, text, score) in enumerate(texts)
    ]  # fmt: skip


ZH1, ZH2, EN1, EN2 = "c-zh-1", "c-zh-2", "c-en-1", "en/2 <b>"
START = {ZH1: _ms(DAY1, 14, 30), ZH2: _ms(DAY2, 10, 5), EN1: _ms(DAY1, 9, 10)}
START |= {EN2: _ms(DAY2, 11, 20), "c-noasr": _ms(DAY2, 16, 45), "c-live": _ms(DAY2, 12)}
START |= {"c-later": _ms(date(2024, 5, 3), 8)}


def _rows() -> tuple[list[CallRow], list[Transcript]]:
    s = START
    calls = [
        # v1 would be the worst call; v2 (a late correction) replaces it
        _call(ZH1, s[ZH1], 120, 1, metrics=_metrics(120, -0.9, 0.5, 3), card=_card("000", s[ZH1])),
        _call(ZH1, s[ZH1], 130, 2, metrics=_metrics(130, 0.4, 0.55, 4), card=_card("110", s[ZH1])),
        _call(ZH2, s[ZH2], 200, metrics=_metrics(200, -0.6, 0.7, 12), card=_card("1-0", s[ZH2])),
        _call(EN1, s[EN1], 90, metrics=_metrics(90, 0.02, 0.45, 2), card=_card("110", s[EN1])),
        _call(EN2, s[EN2], 60, metrics=_metrics(60, -0.3, 0.6, 8), card=_card("110", s[EN2])),
        _call("c-noasr", s["c-noasr"], 95),  # ASR off: no metrics, no scorecard
        _call("c-live", s["c-live"], 30, version=0, final=False, metrics=_metrics(30, -1, 1, 1)),
        _call("c-later", s["c-later"], 40, metrics=_metrics(40, 0.5, 0.5, 1)),  # out of range
    ]  # fmt: skip
    turns = (
        _turns(ZH1, s[ZH1], [("agent", "您好，请问有什么可以帮您？", 0.0),
                             ("customer", "我想申请退款，订单一直没到。", -0.2)])
        + _turns(ZH2, s[ZH2], [("customer", "这个订单太慢了，我要投诉，退款怎么还没到账？", -0.8),
                               ("agent", "非常抱歉，我马上帮您查询。", 0.1)])
        + _turns(EN1, s[EN1], [("agent", "Hello, how can I help?", 0.3),
                               ("customer", "I want a refund for my order, it arrived broken.", -0.4)])  # noqa: E501
        + _turns(EN2, s[EN2], [("customer", "I want <script>alert(1)</script> my refund & money back", -0.5)])  # noqa: E501
        + _turns("c-live", s["c-live"], [("customer", "invoice invoice invoice", 0.0)])
        + _turns("c-later", s["c-later"], [("customer", "warranty warranty", 0.0)])
    )  # fmt: skip
    return calls, turns


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warehouse")
    calls, turns = _rows()
    for row in calls:
        name = call_file(row)
        if row.call_id == "c-later":  # a tree mixing dt=/ and dt=/hour=/ files reads too
            day, *_, base = name.split("/")
            name = f"{day}/{base}" if "/hour=" in name else f"{day}/hour=08/{base}"
        write_rows_file(root / CALLS.name / name, CALLS, [row])
    for t in turns:
        write_rows_file(root / TRANSCRIPTS.name / transcript_file(t), TRANSCRIPTS, [t])
    return root


@pytest.fixture(scope="module")
def report(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportSummary:
    return build_report(warehouse, DAY1, DAY2, tmp_path_factory.mktemp("report"))


def _expected(root: Path, start: date, end: date) -> dict[str, Any]:
    """The summary recomputed from the Parquet files with pyarrow and plain Python."""
    rows = [r for f in (root / "calls").rglob("*.parquet") for r in pq.read_table(f).to_pylist()]
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["is_final"] and r["version"] > latest.get(r["call_id"], {"version": -1})["version"]:
            latest[r["call_id"]] = r
    days = {
        c: datetime.fromtimestamp(r["start_ms"] / 1000, tz=UTC).date() for c, r in latest.items()
    }  # noqa: E501
    calls = [r for c, r in latest.items() if start <= days[c] <= end]
    scores = [r["metrics"]["sentiment"] for r in calls if r["metrics"]]
    texts: dict[str, list[str]] = {r["call_id"]: [] for r in calls}
    for f in (root / "transcripts").rglob("*.parquet"):
        for t in pq.read_table(f).to_pylist():
            if t["call_id"] in texts:
                texts[t["call_id"]].append(t["text"])
    answers = [a for r in calls if r["scorecard"] for a in r["scorecard"]["answers"]]
    asked = [a for a in answers if a["passed"] is not None]  # null: not applicable
    lengths = [r["metrics"]["duration_s"] if r["metrics"] else (r["end_ms"] - r["start_ms"]) / 1000
               for r in calls]  # fmt: skip
    return {
        "total_calls": len(calls),
        "top_keywords": [list(kv) for kv in top_keywords_across(list(texts.values()), 10)],
        "sentiment_distribution": {
            "positive": sum(s >= 0.05 for s in scores),
            "neutral": sum(-0.05 < s < 0.05 for s in scores),
            "negative": sum(s <= -0.05 for s in scores),
        },
        "avg_call_length": sum(lengths) / len(lengths) if lengths else 0.0,
        "date_range": [start.isoformat(), end.isoformat()],
        "scorecard_pass_rates": {
            q: sum(bool(a["passed"]) for a in asked if a["question_id"] == q)
            / sum(a["question_id"] == q for a in asked)
            for q in sorted({a["question_id"] for a in asked})
        },
    }


def test_summary_matches_the_parquet_contents(warehouse: Path, report: ReportSummary) -> None:
    summary = json.loads(report.summary_path.read_text(encoding="utf-8"))
    expected = _expected(warehouse, DAY1, DAY2)
    assert summary["avg_call_length"] == pytest.approx(expected.pop("avg_call_length"))
    assert {k: v for k, v in summary.items() if k != "avg_call_length"} == expected
    assert summary == report.summary
    # by hand: v2 of c-zh-1 counts, the live row and the 3 May call do not
    assert summary["total_calls"] == 5
    assert summary["avg_call_length"] == pytest.approx((130 + 200 + 90 + 60 + 95) / 5)
    assert summary["sentiment_distribution"] == {"positive": 1, "neutral": 1, "negative": 2}
    assert summary["scorecard_pass_rates"] == {
        "greeting": 1.0, "no_forbidden_words": 1.0, "resolution": 0.0}  # fmt: skip
    terms = dict(map(tuple, summary["top_keywords"]))
    assert terms["退款"] == 2 and terms["refund"] == 2
    assert "invoice" not in terms and "warranty" not in terms


def test_worst_calls_are_linked_to_their_transcript_pages(report: ReportSummary) -> None:
    page = report.report_path.read_text(encoding="utf-8")
    worst = [ZH2, EN2, EN1, ZH1]  # by normalized score, then the more negative sentiment
    assert [p.name for p in report.call_pages] == [page_name(c) for c in worst]
    positions = [page.index(f'href="calls/{page_name(c)}"') for c in worst]
    assert positions == sorted(positions)
    for path in report.call_pages:
        assert path.is_file() and 'href="../report.html"' in path.read_text(encoding="utf-8")
    zh2 = (report.report_path.parent / "calls" / page_name(ZH2)).read_text(encoding="utf-8")
    assert "这个订单太慢了" in zh2 and "no_forbidden_words" in zh2 and "customer" in zh2
    en2 = (report.report_path.parent / "calls" / page_name(EN2)).read_text(encoding="utf-8")
    assert "<script>" not in en2 and "&lt;script&gt;" in en2 and "en/2 &lt;b&gt;" in en2
    assert "<b>" not in page and "evidence &lt;greeting&gt;" in en2
    assert "data:image/png;base64," in page
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|calls/)', page)  # self-contained


def test_an_empty_range_writes_a_report_of_zeros(warehouse: Path, tmp_path: Path) -> None:
    result = build_report(warehouse, date(2023, 1, 1), date(2023, 1, 31), tmp_path)
    assert result.summary == {
        "total_calls": 0, "top_keywords": [],
        "sentiment_distribution": {"positive": 0, "neutral": 0, "negative": 0},
        "avg_call_length": 0.0, "date_range": ["2023-01-01", "2023-01-31"],
        "scorecard_pass_rates": {},
    }  # fmt: skip
    assert result.call_pages == ()
    assert "No calls between 2023-01-01 and 2023-01-31" in result.report_path.read_text()


def test_cli_defaults_to_the_data_range(
    warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report_main([f"--output_dir={warehouse}", f"--report_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[: out.rindex("}") + 1])
    assert printed["date_range"] == ["2024-05-01", "2024-05-03"] and printed["total_calls"] == 6
    assert f"report: {tmp_path / 'report.html'}" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from=2024-13-01"], "--from '2024-13-01' is not a date: write it as YYYY-MM-DD."),
        (["--from=2024-05-02", "--to=2024-05-01"], "ends before it starts"),
        (["--output_dir=/nonexistent/warehouse"], "no warehouse at /nonexistent/warehouse"),
    ],
)
def test_cli_errors_are_one_sentence(
    warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
    message: str,
) -> None:  # fmt: skip
    argv = [f"--output_dir={warehouse}", f"--report_dir={tmp_path}", *args]
    assert report_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and err.startswith("callqa report: error:")


def test_report_renders_in_headless_chromium(report: ReportSummary, tmp_path: Path) -> None:
    import matplotlib.image
    import numpy as np

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail(
            "chromium is not installed: run deploy/local/setup.sh (apt-get install chromium)."
        )  # noqa: E501
    png = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
         "--window-size=1280,2000", report.report_path.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100, f"the screenshot looks blank ({len(colours)} colours)"
