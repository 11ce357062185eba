"""``callqa report``: an HTML report and a JSON summary of the calls in a date range.

Input: the warehouse under ``root``: its Iceberg tables ``calls`` and ``transcripts`` (or, from a
``--warehouse=parquet`` run, the Parquet files under ``calls/`` and ``transcripts/``).
A call counts once, as its latest final row (live rows and superseded versions never count), and
belongs to the range when its ``start_ms`` falls on one of the UTC days ``start_date..end_date``.

Output, under ``out_dir``: ``report.html`` (self-contained: CSS and PNG plots inline, nothing
fetched), ``summary.json`` and ``calls/<call>.html`` for each of the worst-scored calls (its
transcript and scorecard answers)::

    summary = build_report("out", date(2024, 5, 1), date(2024, 5, 7), Path("out/report"))
    summary.summary["total_calls"]  # also in summary.json
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import logging
import re
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from beam_jobs import warehouse
from schemas.tables import CALLS, TRANSCRIPTS
from transforms.core.text_analytics import sentiment_label, top_keywords_across

TOP_KEYWORDS: Final = 10
WORST_CALLS: Final = 10
SENTIMENT_LABELS: Final = ("positive", "neutral", "negative")
# Matplotlib falls back along this list glyph by glyph (>= 3.6); only installed ones are named,
# so a missing font is neither searched for nor warned about.
_FONTS: Final = ("Noto Sans CJK SC", "WenQuanYi Zen Hei", "DejaVu Sans")
_CSS: Final = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th{background:#eef}.num{text-align:right}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}section{margin-bottom:2em}
.totals span{margin-right:2em;font-weight:bold}.positive,.pass{color:#1a7f37}
.negative,.fail{color:#c62828}.na{color:#777}
"""


@dataclass(frozen=True)
class ReportSummary:
    """What ``build_report`` wrote: the main page, the JSON summary (and its content), and the
    pages of the worst calls."""

    report_path: Path
    summary_path: Path
    call_pages: tuple[Path, ...]
    summary: dict[str, Any]


def _scan(root: Path, table: str) -> str | None:
    """The Iceberg table (the default warehouse), else a DuckDB ``read_parquet`` over every
    file of ``table`` (any partition depth); None without rows."""
    iceberg = warehouse.iceberg_scan(root, table)
    if iceberg is not None:
        return iceberg
    if not any((root / table).glob("**/*.parquet")):
        return None
    glob = str(root / table / "**" / "*.parquet").replace("'", "''")
    # No partition column is read (rows carry their times), and DuckDB's Hive reading refuses a
    # tree mixing dt=/ files with dt=/hour=/ ones ("Hive partition mismatch").
    return f"read_parquet('{glob}', hive_partitioning = false, union_by_name = true)"


def _columns(con: Any, scan: str, wanted: Sequence[str]) -> str:
    """``wanted`` as a select list; columns that older files lack read as NULL."""
    have = set(con.sql(f"SELECT * FROM {scan} LIMIT 0").columns)
    return ", ".join(c if c in have else f"NULL AS {c}" for c in wanted)


def _final_calls(root: Path) -> str:
    scan = _scan(root, CALLS.name)
    if scan is None:  # a warehouse the job has not written a call to yet
        return "(SELECT NULL::VARCHAR AS call_id, NULL::BIGINT AS start_ms LIMIT 0)"
    return f"""(SELECT * FROM {scan} WHERE is_final
        QUALIFY row_number() OVER (PARTITION BY call_id ORDER BY version DESC) = 1)"""


def _check_warehouse(root: Path) -> None:
    if not (root / CALLS.name).is_dir() and warehouse.iceberg_scan(root, CALLS.name) is None:
        raise FileNotFoundError(
            f"no warehouse at {root} (no {CALLS.name}/ directory): pass the job's --output_dir."
        )


def data_date_range(root: str | Path) -> tuple[date, date] | None:
    """The first and last UTC day on which a final call starts, or None without calls."""
    _check_warehouse(Path(root))
    sql = f"SELECT min(start_ms), max(start_ms) FROM {_final_calls(Path(root))}"
    con = _connect()
    lo, hi = con.sql(sql).fetchall()[0]
    return None if lo is None else (_day(lo), _day(hi))


def _connect() -> Any:
    return warehouse.iceberg_duckdb()  # private and in-memory, with the iceberg extension


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def _load(root: Path, start: date, end: date) -> tuple[list[dict[str, Any]], dict[str, list]]:
    """The calls in range (start order) and their transcripts by call id (time order)."""
    con = _connect()
    lo, hi = (int(datetime(*d.timetuple()[:3], tzinfo=UTC).timestamp() * 1000)
              for d in (start, end + timedelta(days=1)))  # fmt: skip
    con.sql(
        f"CREATE TEMP TABLE sel AS SELECT * FROM {_final_calls(root)} "
        f"WHERE start_ms >= {lo} AND start_ms < {hi}"
    )
    cols = ("call_id", "version", "start_ms", "end_ms", "agent_id", "queue", "metrics")
    rel = con.sql(
        f"SELECT {_columns(con, 'sel', (*cols, 'scorecard'))} FROM sel ORDER BY start_ms, call_id"
    )
    calls = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    transcripts: dict[str, list] = defaultdict(list)
    scan = _scan(root, TRANSCRIPTS.name)
    if scan is not None and calls:
        wanted = ("call_id", "channel", "start_ms", "end_ms", "text", "sentiment")
        rel = con.sql(
            f"SELECT {_columns(con, scan, wanted)} FROM {scan} "
            "WHERE call_id IN (SELECT call_id FROM sel) ORDER BY call_id, start_ms, channel"
        )
        for row in rel.fetchall():
            transcripts[row[0]].append(dict(zip(rel.columns, row, strict=True)))
    return calls, transcripts


def _metric(call: dict[str, Any], name: str) -> Any:
    return (call["metrics"] or {}).get(name)


def _length_s(call: dict[str, Any]) -> float:
    duration = _metric(call, "duration_s")
    return float(duration) if duration is not None else (call["end_ms"] - call["start_ms"]) / 1000


def _pass_rates(calls: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per question id: the share of the calls asked it that passed ("not applicable" answers,
    ``passed`` null, are not asked)."""
    answers = [a for c in calls for a in (c["scorecard"] or {}).get("answers") or ()]
    asked = Counter(a["question_id"] for a in answers if a["passed"] is not None)
    passed = Counter(a["question_id"] for a in answers if a["passed"])
    return {q: passed[q] / asked[q] for q in sorted(asked)}


def _worst(calls: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Scored calls, lowest normalized score first; ties: the more negative sentiment first."""
    scored = [c for c in calls if c["scorecard"] is not None]

    def key(c: dict[str, Any]) -> tuple[float, float, str]:
        s = _metric(c, "sentiment")
        return c["scorecard"]["normalized_score"], 2.0 if s is None else s, c["call_id"]

    return sorted(scored, key=key)[:n]


def page_name(call_id: str) -> str:
    """A file name for a call's page: URL- and file-safe, distinct per call id."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", call_id)[:80]
    if safe != call_id:  # the hash keeps "a b" and "a_b" apart
        safe += "-" + hashlib.sha1(call_id.encode()).hexdigest()[:8]
    return safe + ".html"


# --- plots ------------------------------------------------------------------------------------


@contextmanager
def _plotting() -> Iterator[bool]:
    """Matplotlib set up for the report's plots, which are made inside (text takes its font when
    created): the installed fonts of ``_FONTS``, font warnings silenced. Yields whether a font
    covers Chinese."""
    from matplotlib import rc_context
    from matplotlib.font_manager import fontManager

    installed = {f.name for f in fontManager.ttflist}
    fonts = [f for f in _FONTS if f in installed] or ["DejaVu Sans"]
    log = logging.getLogger("matplotlib.font_manager")
    level = log.level
    log.setLevel(logging.ERROR)  # WenQuanYi has one weight: "Failed to find font weight normal"
    try:
        with warnings.catch_warnings(), rc_context({"font.family": fonts}):
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
            yield fonts[0] in _FONTS[:2]
    finally:
        log.setLevel(level)


def _figure(xlabel: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 2.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylabel == "calls":
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _bars(labels: Sequence[str], values: Sequence[float], xlabel: str, ylabel: str = "calls",
          ymax: float | None = None) -> str:  # fmt: skip
    fig, ax = _figure(xlabel, ylabel)
    ax.bar(range(len(values)), values, color="#4a78c2")
    tilt = 45 if len(labels) > 12 or sum(map(len, labels)) > 60 else 0
    ax.set_xticks(range(len(labels)), labels, rotation=tilt, ha="right" if tilt else "center")
    ax.set_ylim(0, ymax)
    return _png(fig)


def _hist(values: Sequence[float], bins: Any, xlabel: str) -> str:
    if not values:
        return f"<p>No {_e(xlabel)} data.</p>"
    fig, ax = _figure(xlabel, "calls")
    ax.hist(values, bins=bins, color="#4a78c2", edgecolor="white")
    return _png(fig)


# --- HTML -------------------------------------------------------------------------------------

_e = html.escape


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, tuple):  # (raw html, css class): already escaped by the caller
            return f'<td class="{v[1]}">{v[0]}</td>'
        if isinstance(v, float):
            return f'<td class="num">{v:.2f}</td>'
        return f'<td class="num">{v}</td>' if isinstance(v, int) else f"<td>{_e(str(v))}</td>"

    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{ths}</tr>{trs}</table>"


def _table_or(empty: str, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return _table(head, rows) if rows else f"<p>{_e(empty)}</p>"


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
        f"</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _offset(ms: int | None, start_ms: int) -> str:
    if ms is None:
        return ""
    s = max(ms - start_ms, 0) // 1000
    return f"{s // 60}:{s % 60:02d}"


def _sentiment_cell(score: float | None) -> tuple[str, str]:
    label = sentiment_label(score)
    return ("" if score is None else f"{label} ({score:+.2f})"), label


_ANSWER_CELLS: Final = {True: ("pass", "pass"), False: ("fail", "fail"), None: ("n/a", "na")}


def _call_page(call: dict[str, Any], transcript: Sequence[dict[str, Any]]) -> str:
    card = call["scorecard"]
    start = call["start_ms"]
    answers = [
        (a["question_id"], _ANSWER_CELLS[a["passed"]],
         f"{a['points']:g}/{a['potential']:g}", a["evidence"], _offset(a["evidence_ms"], start))
        for a in (card or {}).get("answers") or ()
    ]  # fmt: skip
    lines = [
        (_offset(t["start_ms"], start), t["channel"], t["text"], _sentiment_cell(t["sentiment"]))
        for t in transcript
    ]
    score = (
        "no scorecard"
        if card is None
        else (
            f"{_e(card['scorecard'])}: {card['score']:g}/{card['potential']:g} "
            f"({card['normalized_score']:.0%})"
        )
    )
    body = (
        f'<p><a href="../report.html">&larr; report</a></p><h1>Call {_e(call["call_id"])}</h1>'
        f"<p>Started {_clock(start)}, {_length_s(call):.0f} s, version {call['version']}, "
        f"agent {_e(str(call['agent_id'] or '-'))}, queue {_e(str(call['queue'] or '-'))}. "
        f"Score: {score}. Sentiment: {_e(_sentiment_cell(_metric(call, 'sentiment'))[0] or '-')}"
        f".</p><h2>Scorecard</h2>"
        + _table_or("No scorecard answers.", ("question", "result", "points", "evidence", "at"),
                    answers)
        + "<h2>Transcript</h2>"
        + _table_or("No transcript.", ("time", "role", "text", "sentiment"), lines)
    )  # fmt: skip
    return _page(f"Call {call['call_id']}", body)


def _main_page(
    summary: dict[str, Any],
    calls: Sequence[dict[str, Any]],
    worst: Sequence[dict[str, Any]],
    cjk_plot: bool,
) -> str:
    start, end = summary["date_range"]
    head = f"<h1>Call QA report {_e(start)} &ndash; {_e(end)} (UTC)</h1>"
    if not calls:
        return _page("Call QA report", head + f"<p>No calls between {start} and {end}.</p>")
    dist = summary["sentiment_distribution"]
    hours = Counter(datetime.fromtimestamp(c["start_ms"] / 1000, tz=UTC).hour for c in calls)
    sentiments = [s for c in calls if (s := _metric(c, "sentiment")) is not None]
    ratios = [r for c in calls if (r := _metric(c, "agent_talk_ratio")) is not None]
    gaps = [g for c in calls if (g := _metric(c, "longest_non_talk_s")) is not None]
    keywords = summary["top_keywords"]
    rates = summary["scorecard_pass_rates"]
    kw_labels = [t if cjk_plot or t.isascii() else f"#{i}" for i, (t, _) in enumerate(keywords, 1)]
    worst_rows = [
        (
            (f'<a href="calls/{_e(page_name(c["call_id"]))}">{_e(c["call_id"])}</a>', ""),
            _clock(c["start_ms"]),
            c["scorecard"]["normalized_score"],
            _sentiment_cell(_metric(c, "sentiment")),
            round(_length_s(c)),
        )
        for c in worst
    ]
    unscored = sum(1 for c in calls if c["metrics"] is None)
    sections = [
        f'<p class="totals"><span>{summary["total_calls"]} calls</span><span>average length '
        f"{summary['avg_call_length']:.0f} s</span><span>{unscored} without transcript "
        "metrics</span></p>",
        "<h2>Calls per hour of day (UTC)</h2>"
        + _bars([f"{h:02d}" for h in range(24)], [hours[h] for h in range(24)], "hour"),
        '<h2>Sentiment</h2><div class="row">'
        + _hist(sentiments, [i / 10 for i in range(-10, 11)], "sentiment")
        + _table(SENTIMENT_LABELS, [[dist[k] for k in SENTIMENT_LABELS]]) + "</div>",
        '<h2>Top keywords</h2><div class="row">'
        + (_bars(kw_labels, [n for _, n in keywords], "keyword") if keywords else "")
        + _table_or("No keywords.", ("#", "keyword", "calls"),
                    [(i, t, n) for i, (t, n) in enumerate(keywords, 1)]) + "</div>",
        '<h2>Talk and silence</h2><div class="row">'
        + _hist(ratios, [i / 20 for i in range(21)], "agent talk ratio")
        + _hist(gaps, 20, "longest non-talk (s)") + "</div>",
        '<h2>Scorecard pass rate per question</h2><div class="row">'
        + (_bars(list(rates), [100 * r for r in rates.values()], "question", "% passed", 100)
           if rates else "")
        + _table_or("No scorecards.", ("question", "pass rate"),
                    [(q, f"{r:.0%}") for q, r in rates.items()]) + "</div>",
        "<h2>Worst calls</h2>"
        + _table_or("No scored calls.", ("call", "start", "score", "sentiment", "length (s)"),
                    worst_rows),
    ]  # fmt: skip
    return _page("Call QA report", head + "".join(f"<section>{s}</section>" for s in sections))


def build_report(
    root: str | Path, start_date: date, end_date: date, out_dir: Path
) -> ReportSummary:
    """Write ``report.html``, ``summary.json`` and the worst calls' pages under ``out_dir`` for
    the final calls starting on the UTC days ``start_date..end_date`` (inclusive).

    Raises ``FileNotFoundError`` when ``root`` holds no warehouse, ``ValueError`` when the range
    is reversed. An empty range writes a report that says so and a summary of zeros.
    """
    root = Path(root)
    _check_warehouse(root)
    if start_date > end_date:
        raise ValueError(f"the range {start_date}..{end_date} ends before it starts: swap them.")
    calls, transcripts = _load(root, start_date, end_date)
    labels = Counter(sentiment_label(_metric(c, "sentiment")) for c in calls)
    texts = [
        [t["text"] for t in transcripts[c["call_id"]]] or list(_metric(c, "keywords") or ())
        for c in calls
    ]
    summary: dict[str, Any] = {
        "total_calls": len(calls),
        "top_keywords": [[t, n] for t, n in top_keywords_across(texts, TOP_KEYWORDS)],
        "sentiment_distribution": {k: labels[k] for k in SENTIMENT_LABELS},
        "avg_call_length": sum(map(_length_s, calls)) / len(calls) if calls else 0.0,
        "date_range": [start_date.isoformat(), end_date.isoformat()],
        "scorecard_pass_rates": _pass_rates(calls),
    }
    worst = _worst(calls, WORST_CALLS)
    (out_dir / "calls").mkdir(parents=True, exist_ok=True)
    pages = []
    for call in worst:
        page = out_dir / "calls" / page_name(call["call_id"])
        page.write_text(_call_page(call, transcripts[call["call_id"]]), encoding="utf-8")
        pages.append(page)
    report = out_dir / "report.html"
    with _plotting() as cjk_plot:
        main_html = _main_page(summary, calls, worst, cjk_plot)
    report.write_text(main_html, encoding="utf-8")
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return ReportSummary(report, summary_path, tuple(pages), summary)


def _parse_day(flag: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{flag} {value!r} is not a date: write it as YYYY-MM-DD.") from None


def report_main(argv: Sequence[str]) -> int:
    """``callqa report``: build the report, print the summary JSON and the report's path.

    Returns 0, or 2 after one sentence on stderr (bad date, reversed range, no warehouse).
    Omitted ``--from``/``--to`` default to the first/last day with a call in the warehouse.
    """
    parser = argparse.ArgumentParser(prog="callqa report", description="HTML report of the calls.")
    parser.add_argument("--output_dir", default="out", help="warehouse root (the job's output)")
    parser.add_argument("--from", dest="start", help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", help="last UTC day, YYYY-MM-DD")
    parser.add_argument("--report_dir", help="where to write (default: <output_dir>/report)")
    args = parser.parse_args(list(argv))
    try:
        start = _parse_day("--from", args.start) if args.start else None
        end = _parse_day("--to", args.end) if args.end else None
        if start is None or end is None:
            today = datetime.now(tz=UTC).date()
            lo, hi = data_date_range(args.output_dir) or (today, today)
            start = start or min(lo, end or lo)
            end = end or max(hi, start)
        out = Path(args.report_dir or Path(args.output_dir) / "report")
        result = build_report(args.output_dir, start, end, out)
    except (FileNotFoundError, ImportError, ValueError) as exc:
        print(f"callqa report: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary, ensure_ascii=False, indent=2))
    print(f"report: {result.report_path}")
    return 0
