"""``callqa bench capacity``: how many live calls one node holds.

N two-party spoken calls at real-time pace (the demo's English, Mandarin and zh/en scripts
spoken by espeak-ng with their pauses redrawn: the cached ``bench batch`` corpus, reused
cyclically under fresh call ids) go as contract-v1 events, 100 ms chunks per channel, through
the local Kafka broker into the streaming job started exactly as ``callqa run --streaming
--asr=embedded`` (its own process, every default unchanged: live rows on). N steps up through
``--levels``; each level ramps its calls in staggered (a call that ends is replaced at once,
so N stay live), holds them ``--hold-s``, then keeps them ``--grace-s`` more while the
level's last results arrive. Per level: end of utterance → transcript on the live topic
(p50, p95), end of call → final row readable in the warehouse (p95), event-time lag at the
start and the end of the hold, CPU and RSS per process, and CPU per stage (py-spy's samples
of each thread weighted by the thread's CPU time). After the job stops, the ASR-bound
ceiling: the backend batched by hand on the run's own utterances, as calls. The capacity is
the largest N whose level, and every level below it, meets the criteria (``verdict``).

Event-time lag at an instant = wall clock − the latest event time (utterance end) the job has
published on the live-transcripts topic; a level's lag at its start (end) is the smallest
value in the first (last) window of the hold, i.e. just after a transcript arrived, which
cancels the gaps between utterances. A job that keeps up holds it flat; one that falls
behind sees it grow with the backlog. The consumer group's committed offsets are no measure
of it: the job acknowledges a chunk only when its call expires (``--allowed_lateness_s``
after the call closed), so that lag is minutes by design.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

from beam_jobs.demo.live import latencies_s, percentile
from schemas.audio import DEFAULT_CHUNK_MS
from schemas.events import AudioChunkEvent
from schemas.tables import CALLS
from transforms.io.iceberg import CatalogConfig, ensure_tables
from transforms.io.iceberg_maintenance import CommitStats
from transforms.io.iceberg_sink import IcebergSinkConfig
from transforms.io.recordings import CallAudio, call_events

DEFAULT_LEVELS: Final = "2,4,8,12,16,24,32,48,64"
#: The capacity criteria (the issue's): a live view needs its transcript within 2.5 s at
#: p95, a consumer of the warehouse the final row within 5 s of the end of the call, and the
#: job must keep up: its event-time lag may not grow over the hold by more than the jitter
#: of a job that keeps up (about one ASR batch; a 2 % overload grows it about 3 s between
#: the two windows of a 180 s hold).
TRANSCRIPT_P95_MAX_S: Final = 2.5
FINAL_P95_MAX_S: Final = 5.0
LAG_GROWTH_MAX_S: Final = 2.0
LAG_WINDOW_MAX_S: Final = 30.0
WARMUP_CALL_ID: Final = "cap-warmup"
WARMUP_S: Final = 20.0  # the warm-up call: the first seconds of a pool call
#: Silence between a call that ends and its replacement (drawn: keeps starts spread).
_REPLACE_GAP_S: Final = (0.5, 2.0)
_SPEECH_LEVEL: Final = 0.01  # a 100 ms frame with a sample this loud holds speech


# --- pure helpers --------------------------------------------------------------------------


def parse_duration_s(text: str) -> float:
    """``30m``, ``1h``, ``90s`` or ``90`` (seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if m is None or float(m[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration: use e.g. 30m, 1h or 90s")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def parse_levels(text: str) -> tuple[int, ...]:
    """``2,4,8`` → (2, 4, 8): positive and increasing (the capacity is read bottom up)."""
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--levels {text!r}: comma-separated call counts, e.g. 2,4,8") from None
    if not levels or min(levels) < 1 or list(levels) != sorted(set(levels)):
        raise ValueError(f"--levels {text!r}: call counts >= 1 in increasing order, e.g. 2,4,8")
    return levels


#: Utterances the latency floor's one-at-a-time decode is measured on.
FLOOR_UTTERANCES: Final = 20


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank, as the demo reports it); None without values."""
    return percentile(list(values), q) if values else None


def event_time_lag_s(received: Sequence[tuple[int, int]], at_ms: int) -> float | None:
    """Wall clock at ``at_ms`` − the latest event time published by then, in seconds.
    ``received``: (receive ms, event-time end ms) pairs in receive order. None before any."""
    latest = max((end for recv, end in received if recv <= at_ms), default=None)
    return None if latest is None else (at_ms - latest) / 1000


def window_lag_s(received: Sequence[tuple[int, int]], start_ms: int, end_ms: int) -> float | None:
    """The smallest event-time lag over [start_ms, end_ms]. Lag only grows between receipts,
    so the minimum is at ``start_ms`` or just after a receipt inside the window."""
    best = event_time_lag_s(received, start_ms)
    latest = max((end for recv, end in received if recv <= start_ms), default=None)
    for recv, end in received:
        if not start_ms < recv <= end_ms:
            continue
        latest = end if latest is None else max(latest, end)
        lag = (recv - latest) / 1000
        best = lag if best is None else min(best, lag)
    return best


def lag_windows(start_ms: int, end_ms: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The windows a hold's lag is read in: its first and its last third, 30 s at most."""
    width = int(min(LAG_WINDOW_MAX_S * 1000, (end_ms - start_ms) / 3))
    return (start_ms, start_ms + width), (end_ms - width, end_ms)


_FRAME_FILE: Final = re.compile(r"\(([^()]*?):\d+\)\s*$")
_THREAD_FRAME: Final = re.compile(r"^thread \((0x[0-9a-fA-F]+|\d+)\)")
#: py-spy names a file by its path below the ``sys.path`` entry it was imported from: ours as
#: ``transforms/segment.py``, Beam's as ``apache_beam/transforms/core.py``.
_STAGE_FILE: Final = re.compile(r"^transforms/(?:(asr|io|core)/)?(\w+)\.py$")
_RUNTIME_FILE: Final = re.compile(r"^(?:apache_beam|grpc|google/protobuf)/")
_PROJECT_ROOT: Final = str(Path(__file__).resolve().parents[2]) + "/"
NATIVE: Final = "native threads"


def frame_stage(path: str) -> str | None:
    """The stage a source file belongs to: ``segment`` for ``transforms/segment.py``, ``asr``
    for ``transforms/asr/…``, ``io/<module>`` for the I/O edges, ``core`` for the pure
    helpers (they count for the stage that called them); None outside ``transforms``."""
    m = _STAGE_FILE.match(path.removeprefix(_PROJECT_ROOT))
    if m is None or m[2] == "__init__":
        return None
    package, module = m[1], m[2]
    if package == "asr":
        return "asr"
    if package == "io":
        return f"io/{module}"
    return "core" if package == "core" else module


def stack_stage(frames: Sequence[str]) -> str:
    """A py-spy stack (root first, ``func (file:line)``) → the deepest stage frame on it;
    without one ``beam/grpc`` (the runner's harness, gRPC, protobuf) or ``other``."""
    core = runtime = False
    for frame in reversed(frames):
        m = _FRAME_FILE.search(frame)
        if m is None:
            continue
        stage = frame_stage(m[1])
        if stage == "core":
            core = True
        elif stage is not None:
            return stage
        elif _RUNTIME_FILE.match(m[1].removeprefix(_PROJECT_ROOT)):
            runtime = True
    return "core" if core else "beam/grpc" if runtime else "other"


def thread_stage_samples(raw: str) -> dict[int, dict[str, int]]:
    """py-spy ``record --format raw --threads`` output (``[process …;]thread (tid): name;
    frame;… count`` per line) → per OS thread id, samples per stage (thread 0: no thread
    frame)."""
    out: dict[int, dict[str, int]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        tid = 0
        for frame in frames:
            m = _THREAD_FRAME.match(frame)
            if m is not None:
                tid = int(m[1], 0)
                break
        per = out.setdefault(tid, {})
        label = stack_stage(frames)
        per[label] = per.get(label, 0) + int(count)
    return out


def stage_cpu_s(
    samples: Mapping[int, Mapping[str, int]], cpu_s: Mapping[int, float]
) -> dict[str, float]:
    """CPU seconds per stage: each thread's CPU time over the window (``cpu_s``, by OS thread
    id) split by where py-spy found it. Threads py-spy never sampled (native pools: the ASR
    and VAD runtimes' compute threads, gRPC's core) count as ``NATIVE``; sampled threads with
    no CPU time reading keep their samples' share of nothing."""
    out: dict[str, float] = {}
    for tid, cpu in cpu_s.items():
        per = samples.get(tid)
        total = sum(per.values()) if per else 0
        if not per or not total:
            out[NATIVE] = out.get(NATIVE, 0.0) + cpu
            continue
        for label, n in per.items():
            out[label] = out.get(label, 0.0) + cpu * n / total
    return out


def format_stages(cpu_s: Mapping[str, float], window_s: float) -> str:
    """``asr 0.52 (41%), …``: cores (CPU seconds per second of the window) and shares."""
    total = sum(cpu_s.values())
    if total <= 0 or window_s <= 0:
        return "no CPU time in the window"
    ranked = sorted(cpu_s.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [(k, v) for k, v in ranked if v / total >= 0.005]
    return ", ".join(f"{k} {v / window_s:.2f} ({v / total:.0%})" for k, v in shown)


_FINAL_FILE: Final = re.compile(r"^(?P<call>[^.].*)\.v(?P<version>\d+)\.final\.parquet$")


def final_file_call(name: str) -> tuple[str, int] | None:
    """``<call>.v<version>.final.parquet`` → (call, version); None for live rows, temp files."""
    m = _FINAL_FILE.match(name)
    return None if m is None else (m["call"], int(m["version"]))


def speech_per_call_second(
    utterances: Iterable[tuple[str, int, int]], durations_s: Mapping[str, float]
) -> float | None:
    """Seconds of utterance (both channels, as the job cut them) per second of call, over the
    calls in ``durations_s``. ``utterances``: (call id, start ms, end ms)."""
    total = sum(durations_s.values())
    if total <= 0:
        return None
    speech = sum((b - a) / 1000 for c, a, b in utterances if c in durations_s)
    return speech / total


class LevelResult(NamedTuple):
    calls: int
    utterances: int
    transcript_p50_s: float | None
    transcript_p95_s: float | None
    finals: int  # calls that ended in the hold
    finals_missing: int  # of them, without a final row by the end of the grace time
    final_p95_s: float | None  # missing ones count with the time waited (a lower bound)
    lag_start_s: float | None
    lag_end_s: float | None
    cpu_cores: Mapping[str, float]
    rss_mb: Mapping[str, float]
    stages: str  # the py-spy breakdown, or why there is none
    final_max_s: float = FINAL_P95_MAX_S  # Iceberg: plus the commit interval
    slowest: tuple[str, ...] = ()  # the slowest transcripts, described


def verdict(r: LevelResult) -> list[str]:
    """Why a level fails the capacity criteria; empty when it passes. No evidence fails too."""
    out = []
    if r.transcript_p95_s is None:
        out.append("no transcripts")
    elif r.transcript_p95_s > TRANSCRIPT_P95_MAX_S:
        out.append(f"transcript p95 > {TRANSCRIPT_P95_MAX_S:g} s")
    if r.final_p95_s is None:
        out.append("no call ended in the hold (raise --hold-s)")
    elif r.final_p95_s > r.final_max_s:
        out.append(f"final row p95 > {r.final_max_s:g} s")
    if r.lag_start_s is None or r.lag_end_s is None:
        out.append("lag unknown")
    elif r.lag_end_s - r.lag_start_s > LAG_GROWTH_MAX_S:
        out.append(f"lag grew > {LAG_GROWTH_MAX_S:g} s")
    return out


def capacity(levels: Sequence[tuple[int, bool]]) -> int:
    """The largest N that passed with every lower level passing too; 0 if the first failed.
    ``levels``: (N, passed) in increasing N."""
    best = 0
    for n, passed in sorted(levels):
        if not passed:
            break
        best = n
    return best


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _triple(values: Mapping[str, float], keys: Sequence[str], spec: str) -> str:
    return "/".join(_fmt(values.get(k), spec) for k in keys)


CPU_KEYS: Final = ("job", "runner", "kafka", "bench")
RSS_KEYS: Final = ("job", "runner", "kafka")
HEADER: Final = (
    f"{'N':>4}{'utts':>6}{'p50 s':>7}{'p95 s':>7}{'final p95 s (n)':>20}{'lag s':>12}"
    f"{'CPU job/runner/kafka/bench':>28}{'RSS MB job/runner/kafka':>25}  verdict"
)


def format_row(n: int, r: LevelResult) -> str:
    late = f", {r.finals_missing} late" if r.finals_missing else ""
    finals = f"{_fmt(r.final_p95_s)} ({r.finals}{late})"
    lag = f"{_fmt(r.lag_start_s, '.1f')}→{_fmt(r.lag_end_s, '.1f')}"
    fails = verdict(r)
    return (
        f"{n:>4}{r.utterances:>6}{_fmt(r.transcript_p50_s):>7}{_fmt(r.transcript_p95_s):>7}"
        f"{finals:>20}{lag:>12}{_triple(r.cpu_cores, CPU_KEYS, '.2f'):>28}"
        f"{_triple(r.rss_mb, RSS_KEYS, '.0f'):>25}  {'; '.join(fails) or 'ok'}"
    )


# --- the call schedule ---------------------------------------------------------------------


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    pool_index: int
    start_ms: int  # capture time of the first chunk
    end_ms: int  # end of the last chunk's audio


@dataclass
class CallScheduler:
    """Keeps ``target`` calls live as one capture-ordered stream of chunk events.

    ``set_target(n, spacing_s)`` starts the missing calls ``spacing_s`` apart; a call that
    ends is replaced by the next pool call (cyclically, fresh id) after a short drawn gap
    while fewer than ``target`` are live. ``events()`` yields until ``stop()``; fed to
    ``send_events(realtime=True)`` each goes out at its capture time."""

    load: Callable[[int, str], CallAudio]  # (pool index, call id) → audio
    pool_size: int
    chunk_ms: int = DEFAULT_CHUNK_MS
    prefix: str = "cap"
    seed: int = 11
    clock: Callable[[], float] = time.time
    calls: dict[str, CallInfo] = field(default_factory=dict)
    target: int = 0
    _heap: list[tuple[int, int, AudioChunkEvent]] = field(default_factory=list)
    _templates: dict[int, list[AudioChunkEvent]] = field(default_factory=dict)
    _remaining: dict[str, int] = field(default_factory=dict)
    _count: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        import random

        self._rng = random.Random(self.seed)

    def _template(self, index: int) -> list[AudioChunkEvent]:
        """A pool call's events at capture time 0, read and encoded once per pool call."""
        if index not in self._templates:
            self._templates[index] = call_events(self.load(index, ""), 0, self.chunk_ms)
        return self._templates[index]

    def _start(self, start_ms: int) -> None:
        k = len(self.calls)
        call_id = f"{self.prefix}-{k:05d}"
        events = [
            e._replace(call_id=call_id, capture_time_ms=start_ms + (e.capture_time_ms or 0))
            for e in self._template(k % self.pool_size)
        ]
        last = max(e.capture_time_ms or start_ms for e in events)
        self.calls[call_id] = CallInfo(call_id, k % self.pool_size, start_ms, last + self.chunk_ms)
        self._remaining[call_id] = len(events)
        for e in events:
            heapq.heappush(self._heap, (e.capture_time_ms or start_ms, next(self._count), e))

    def live(self) -> int:
        return len(self._remaining)

    def set_target(self, n: int, spacing_s: float) -> float:
        """Aim at ``n`` live calls; returns the seconds until the last new one has started."""
        with self._lock:
            self.target = n
            now_ms = int(self.clock() * 1000) + 200
            new = max(0, n - self.live())
            for i in range(new):
                self._start(now_ms + int(i * spacing_s * 1000))
        return max(0, new - 1) * spacing_s

    def stop(self) -> None:
        self._stopped.set()

    def events(self) -> Iterator[AudioChunkEvent]:
        while not self._stopped.is_set():
            with self._lock:
                item = heapq.heappop(self._heap) if self._heap else None
                if item is not None:
                    e = item[2]
                    self._remaining[e.call_id] -= 1
                    if not self._remaining[e.call_id]:
                        del self._remaining[e.call_id]
                        if self.live() < self.target:
                            gap_s = self._rng.uniform(*_REPLACE_GAP_S)
                            self._start(self.calls[e.call_id].end_ms + int(gap_s * 1000))
            if item is None:
                time.sleep(0.05)
                continue
            yield item[2]


# --- the run: processes, watchers, levels ---------------------------------------------------


class FinalRowWatcher:
    """When each call's first final row became readable: lists the calls table's recent
    ``dt=/hour=`` folders every ``poll_s`` and stats only new ``*.final.parquet`` names (the
    file's ctime: set by the atomic rename that publishes it). Reads no Parquet."""

    def __init__(self, calls_dir: Path, poll_s: float = 0.5) -> None:
        self.first_final_ms: dict[str, int] = {}
        self._dir = calls_dir
        self._seen: set[str] = set()
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _recent(self) -> Iterator[Path]:
        oldest = (datetime.now(UTC) - timedelta(hours=2)).strftime("dt=%Y-%m-%d/hour=%H")
        for day in self._dir.glob("dt=*"):
            for hour in day.glob("hour=*"):
                if f"{day.name}/{hour.name}" >= oldest:
                    yield hour

    def poll(self) -> None:
        for folder in self._recent():
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.name.endswith(".final.parquet") or entry.name in self._seen:
                        continue  # live rows are most files: skipped without a parse
                    parsed = final_file_call(entry.name)
                    if parsed is None:
                        continue
                    self._seen.add(entry.name)
                    ms = int(entry.stat().st_ctime * 1000)
                    call = parsed[0]
                    self.first_final_ms[call] = min(ms, self.first_final_ms.get(call, ms))

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            with contextlib.suppress(FileNotFoundError):
                self.poll()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class FinalCommitWatcher:
    """``FinalRowWatcher`` for Iceberg tables: when each call's first final row became
    readable, i.e. the commit time of the calls table's snapshot that brought it. Reads the
    table's final call ids again on each new snapshot (every commit interval)."""

    def __init__(self, catalog: CatalogConfig, poll_s: float = 0.5) -> None:
        self.first_final_ms: dict[str, int] = {}
        self._catalog = catalog
        self._table: Any = None
        self._snapshot: int | None = None
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def poll(self) -> None:
        import pyiceberg.expressions

        ex: Any = pyiceberg.expressions  # its pydantic signatures confuse mypy: (term, literal)
        if self._table is None:
            self._table = ensure_tables(self._catalog)[CALLS.name]
        tbl = self._table.refresh()
        snapshot = tbl.current_snapshot()
        if snapshot is None or snapshot.snapshot_id == self._snapshot:
            return
        self._snapshot = snapshot.snapshot_id
        finals = tbl.scan(row_filter=ex.EqualTo("is_final", True), selected_fields=("call_id",))
        for call in finals.to_arrow().column("call_id").to_pylist():
            self.first_final_ms.setdefault(call, snapshot.timestamp_ms)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - a commit in flight, a locked catalog
                print(f"  final-row watcher: {exc!r}; retrying", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def job_warehouse(job_args: Sequence[str], output_dir: Path) -> IcebergSinkConfig | None:
    """The Iceberg warehouse the job gets from these options (None: Parquet files)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs.config import StreamingJobOptions, warehouse_config

    argv = [*job_args, f"--output_dir={output_dir}"]
    return warehouse_config(PipelineOptions(argv).view_as(StreamingJobOptions))


def format_commit_stats(stats: Sequence[CommitStats], interval_s: float) -> str:
    per = f"max files / {interval_s:g} s"
    head = (
        f"{'table':<18}{'commits':>8}{'files added':>12}{per:>18}{'min gap s':>10}"
        f"{'live files':>11}"
    )
    rows = [
        f"{c.table:<18}{c.commits:>8}{c.files_added:>12}{c.max_files_per_interval:>18}"
        f"{_fmt(c.min_gap_s, '.1f'):>10}{c.live_files:>11}"
        for c in stats
    ]
    return "\n".join([head, *rows])


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        raise RuntimeError(
            "psutil is missing: pip install -e '.[bench]' (deploy/local/setup.sh does)"
        ) from None
    return psutil


def _listener_pid(port: int) -> int | None:
    """The process listening on ``port`` (the broker's JVM)."""
    psutil = _psutil()
    with contextlib.suppress(psutil.Error, OSError):
        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                return int(c.pid)
    return None


#: Processes of a Flink session cluster on this machine (deploy/flink/cluster.sh): the runner.
FLINK_CLUSTER_CLASSES: Final = (
    "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
    "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
)
#: Beam's worker pool for such a cluster: it and the SDK workers it starts run the job's stages.
WORKER_POOLS: Final = ("beam_jobs.services.worker_pool", "worker_pool_main")


def cluster_role(cmdline: Sequence[str]) -> str | None:
    """ "runner" for a Flink cluster JVM, "job" for a worker pool, None for anything else."""
    words = set(cmdline)
    if words & set(FLINK_CLUSTER_CLASSES):
        return "runner"
    if any(w.endswith(pool) for w in words for pool in WORKER_POOLS):
        return "job"
    return None


def process_groups(job_pid: int, kafka_pid: int | None) -> dict[str, list[Any]]:
    """psutil processes: the job's Python process tree and its Prism child; a Flink session
    cluster's JVMs and its worker pool's tree when they run on this machine (the launcher's
    tree is then only the submission); the broker; us."""
    psutil = _psutil()
    groups: dict[str, list[Any]] = {"job": [], "runner": [], "kafka": [], "bench": []}
    with contextlib.suppress(psutil.NoSuchProcess):
        job = psutil.Process(job_pid)
        for p in [job, *job.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                groups["runner" if "prism" in p.name() else "job"].append(p)
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            role = cluster_role(p.cmdline())
            if role == "runner":
                groups["runner"].append(p)
            elif role == "job":
                groups["job"] += [p, *p.children(recursive=True)]
    if kafka_pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            groups["kafka"].append(psutil.Process(kafka_pid))
    groups["bench"].append(psutil.Process())
    return groups


def usage(groups: Mapping[str, Sequence[Any]]) -> dict[str, tuple[float, float]]:
    """Per group: (CPU seconds so far, RSS MB now)."""
    psutil = _psutil()
    out = {}
    for name, procs in groups.items():
        if not procs:
            continue  # the broker's JVM not found: shown as "-"
        cpu = rss = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss / 2**20
        out[name] = (cpu, rss)
    return out


def thread_cpu_s(procs: Iterable[Any]) -> dict[int, float]:
    """CPU seconds so far of every thread of ``procs`` (psutil processes), by OS thread id."""
    psutil = _psutil()
    out: dict[int, float] = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            for t in p.threads():
                out[t.id] = t.user_time + t.system_time
    return out


class Spy:
    """py-spy over the job's processes for a window, its samples weighted by each thread's
    CPU time over the same window; a note instead where it cannot run (not installed, no
    ptrace permission)."""

    def __init__(self, job_pid: int) -> None:
        self.job_pid = job_pid
        exe = Path(sys.executable).parent / "py-spy"
        self.binary = str(exe) if exe.exists() else shutil.which("py-spy")
        self.note = "" if self.binary else "py-spy not installed (pip install -e '.[bench]')"
        self.procs: list[Any] = []
        self._thread: threading.Thread | None = None
        self._result = ""

    def probe(self) -> bool:
        if self.binary and not self.note:
            run = subprocess.run(
                [self.binary, "dump", "--nonblocking", "--pid", str(self.job_pid)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if run.returncode != 0:
                lines = (run.stderr or run.stdout).strip().splitlines() or ["no output"]
                self.note = f"py-spy failed ({lines[0][:120]}); no stage breakdown"
        return not self.note

    def start(self, duration_s: float) -> None:
        """Record ``duration_s`` in a background thread (the level goes on meanwhile)."""
        if not self.note and self.binary and self._thread is None:
            self._result = ""
            self._thread = threading.Thread(target=self._record, args=(duration_s,), daemon=True)
            self._thread.start()

    def _record(self, duration_s: float) -> None:
        assert self.binary is not None
        fd, name = tempfile.mkstemp(prefix="callqa-spy-", suffix=".txt")
        os.close(fd)
        out = Path(name)
        try:
            before, t0 = thread_cpu_s(self.procs), time.monotonic()
            run = subprocess.run(
                [self.binary, "record", "--format", "raw", "--subprocesses", "--threads",
                 "--nonblocking", "--rate", "50", "--duration", str(max(1, round(duration_s))),
                 "--output", str(out), "--pid", str(self.job_pid)],
                capture_output=True, text=True, timeout=duration_s + 120,
            )  # fmt: skip
            after, window_s = thread_cpu_s(self.procs), time.monotonic() - t0
            raw = out.read_text(errors="replace") if out.exists() else ""
            if not raw:
                err = (run.stderr or "").strip().splitlines() or ["no output"]
                self._result = f"py-spy recorded nothing ({err[-1][:120]})"
                return
            samples = thread_stage_samples(raw)
            cpu = {t: after[t] - before.get(t, 0.0) for t in after}
            n = sum(sum(v.values()) for v in samples.values())
            self._result = (
                f"CPU by stage, cores over {window_s:.0f} s (py-spy, {n:,} samples): "
                + format_stages(stage_cpu_s(samples, cpu), window_s)
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self._result = f"py-spy failed ({exc})"
        finally:
            out.unlink(missing_ok=True)

    def result(self) -> str:
        if self.note:
            return self.note
        if self._thread is None:
            return "no py-spy window in this level"
        self._thread.join(timeout=180)
        self._thread = None
        return self._result or "py-spy did not finish"


def start_job(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """``callqa run <argv>`` as its own process (and session, so it is stopped whole)."""
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "beam_jobs.cli", "run", *argv],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def stop_job(proc: subprocess.Popen[bytes]) -> None:
    """Stop the job, Prism and anything else it started."""
    psutil = _psutil()
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    for child in children:  # Prism outside the job's session, say
        with contextlib.suppress(psutil.Error):
            child.kill()
            child.wait(timeout=5)


@dataclass
class Pool:
    """The cached corpus: stereo files (agent left, customer right)."""

    paths: list[Path]

    def load(self, index: int, call_id: str) -> CallAudio:
        from transforms.io.recordings import load_call

        return load_call(self.paths[index], call_id)

    def stats(self) -> tuple[float, dict[str, float]]:
        """Mean call seconds; per channel (and either) the share of 100 ms frames with speech."""
        import numpy as np
        import soundfile as sf

        seconds = 0.0
        frames = {"agent": 0, "customer": 0, "either": 0}
        n_frames = 0
        for path in self.paths:
            x, rate = sf.read(str(path), dtype="float32", always_2d=True)
            step = rate // 10
            n = len(x) // step
            loud = np.abs(x[: n * step]).reshape(n, step, 2).max(axis=1) >= _SPEECH_LEVEL
            frames["agent"] += int(loud[:, 0].sum())
            frames["customer"] += int(loud[:, 1].sum())
            frames["either"] += int(loud.any(axis=1).sum())
            n_frames += n
            seconds += len(x) / rate
        return seconds / len(self.paths), {k: v / max(1, n_frames) for k, v in frames.items()}


@dataclass
class Run:
    """What the levels measure from: the job, the schedule, the live topic, the warehouse."""

    job: subprocess.Popen[bytes]
    log: Path
    scheduler: CallScheduler
    follower: Any  # LiveFollower
    finals: FinalRowWatcher | FinalCommitWatcher
    groups: dict[str, list[Any]]
    spy: Spy
    mean_call_s: float  # new calls start this / N apart: their phases spread over a call
    chunk_ms: int = DEFAULT_CHUNK_MS
    warm: CallInfo | None = None  # the warm-up call: complete before the levels, not measured
    sender_error: list[BaseException] = field(default_factory=list)
    final_max_s: float = FINAL_P95_MAX_S

    def check(self) -> None:
        if self.job.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the job exited with {self.job.returncode}; its log ends:\n{tail}")
        if self.sender_error:
            raise RuntimeError(f"the producer failed: {self.sender_error[0]!r}")

    def sleep_until(self, t: float) -> None:
        while (left := t - time.time()) > 0:
            self.check()
            time.sleep(min(0.5, left))

    def received(self) -> list[tuple[int, int]]:
        return [(recv, int(e["end_ms"])) for recv, e in list(self.follower.events)]

    def _events(self, start_ms: int, end_ms: int) -> list[tuple[int, dict[str, Any]]]:
        return [
            (recv, e)
            for recv, e in list(self.follower.events)
            if start_ms <= e["end_ms"] < end_ms and e["call_id"] != WARMUP_CALL_ID
        ]

    def latencies(self, start_ms: int, end_ms: int) -> list[float]:
        """End of utterance → transcript on Kafka for utterances ending in [start, end)."""
        return latencies_s(self._events(start_ms, end_ms), self.chunk_ms)

    def slowest(self, start_ms: int, end_ms: int, k: int = 3) -> tuple[str, ...]:
        """The ``k`` slowest of those transcripts: latency, channel, length, place in the call."""
        events = self._events(start_ms, end_ms)
        ranked = sorted(zip(latencies_s(events, self.chunk_ms), events, strict=True),
                        key=lambda le: -le[0])[:k]  # fmt: skip
        out = []
        for lat, (_, e) in ranked:
            call = self.scheduler.calls.get(e["call_id"])
            long_s = (e["end_ms"] - e["start_ms"]) / 1000
            into_s = None if call is None else (e["end_ms"] - call.start_ms) / 1000
            where = "" if into_s is None else f", ending {into_s:.1f} s in"
            out.append(f"{lat:.2f} s ({e['channel']}, {long_s:.1f} s long{where})")
        return tuple(out)

    def final_latencies(self, start_ms: int, end_ms: int) -> tuple[list[float], int, int]:
        """End of call → final row readable, for calls ending in [start, end): the latencies
        (a call still without one counts with the time waited so far), calls, missing."""
        now_ms = int(time.time() * 1000)
        out, missing = [], 0
        ended = [c for c in list(self.scheduler.calls.values()) if start_ms <= c.end_ms < end_ms]
        for c in ended:
            readable = self.finals.first_final_ms.get(c.call_id)
            if readable is None:
                missing += 1
                readable = now_ms
            # as latencies_s: the real producer sends the last chunk chunk_ms later than us
            out.append((readable + self.chunk_ms - c.end_ms) / 1000)
        return out, len(ended), missing


def _measure_level(
    run: Run, n: int, hold_s: float, grace_s: float, spy_s: float, soak: bool
) -> LevelResult:
    """Hold ``n`` calls (after their ramp) for ``hold_s``, then ``grace_s`` more; measure."""
    ramp_s = run.scheduler.set_target(n, run.mean_call_s / n)
    t0 = time.time() + ramp_s + 0.2
    run.sleep_until(t0)
    t1 = t0 + hold_s
    before = usage(run.groups)
    width = min(spy_s, max(1.0, hold_s - 2))
    timer = threading.Timer(max(0.0, (hold_s - width) / 2), run.spy.start, (width,))
    timer.start()
    try:
        minute = t0
        while minute < t1:
            prev, minute = minute, min(minute + 60, t1)
            run.sleep_until(minute)
            if soak:
                _print_minute(run, t0, prev, minute)
    finally:
        timer.cancel()
    after = usage(run.groups)
    run.sleep_until(t1 + grace_s)
    w0, w1 = int(t0 * 1000), int(t1 * 1000)
    lat = run.latencies(w0, w1)
    finals, ended, missing = run.final_latencies(w0, w1)
    (a0, a1), (b0, b1) = lag_windows(w0, w1)
    received = run.received()
    return LevelResult(
        calls=n,
        utterances=len(lat),
        transcript_p50_s=quantile(lat, 0.5),
        transcript_p95_s=quantile(lat, 0.95),
        finals=ended,
        finals_missing=missing,
        final_p95_s=quantile(finals, 0.95),
        lag_start_s=window_lag_s(received, a0, a1),
        lag_end_s=window_lag_s(received, b0, b1),
        cpu_cores={k: (after[k][0] - before[k][0]) / hold_s for k in after if k in before},
        rss_mb={k: after[k][1] for k in after},
        stages=run.spy.result(),
        final_max_s=run.final_max_s,
        slowest=run.slowest(w0, w1),
    )


def _print_minute(run: Run, t0: float, start: float, end: float) -> None:
    now = usage(run.groups)
    a, b = int(start * 1000), int(end * 1000)
    lag = window_lag_s(run.received(), a, b)
    lat = run.latencies(a - 5000, b - 5000)  # their transcripts have had 5 s to arrive
    rss = _triple({k: v[1] for k, v in now.items()}, RSS_KEYS, ".0f")
    print(f"  {(end - t0) / 60:5.1f} min: RSS MB job/runner/kafka {rss}; lag {_fmt(lag, '.1f')} s; "
          f"transcript p95 {_fmt(quantile(lat, 0.95))} s over {len(lat)}", flush=True)  # fmt: skip


def _warm_up(run: Run, bootstrap: str, topic: str, pool: Pool, timeout_s: float) -> None:
    """The first ``WARMUP_S`` of a pool call with capture times in the past, as fast as it goes:
    Prism starts and the models load before the levels (as ``bench latency`` does; future
    event times would move the watermark ahead of the measured calls). Returns once the call's
    final row is readable: every utterance of it has been transcribed, so no backlog of it is
    left to delay the first level (on a slow machine a pause in its transcripts did not mean
    that: CI saw a level of one call get no transcript in its 35 s behind one)."""
    from beam_jobs.demo.producer import new_producer, send_events

    warm = pool.load(0, WARMUP_CALL_ID)
    keep = int(WARMUP_S * warm.sample_rate_hz)
    warm = replace(warm, channels={k: v[:keep] for k, v in warm.channels.items()})
    seconds = len(warm.channels["agent"]) / warm.sample_rate_hz
    start_ms = int((time.time() - seconds - 10) * 1000)
    events = call_events(warm, start_ms, run.chunk_ms)
    send_events(new_producer(bootstrap), topic, events, progress=False)
    last_ms = max(e.capture_time_ms or start_ms for e in events)
    run.warm = CallInfo(WARMUP_CALL_ID, 0, start_ms, last_ms + run.chunk_ms)
    deadline = time.time() + timeout_s
    while not run.follower.events:
        if time.time() > deadline:
            raise RuntimeError(f"no transcript {timeout_s:.0f} s after the job started; see "
                               f"{run.log}")  # fmt: skip
        run.sleep_until(time.time() + 1)
    while WARMUP_CALL_ID not in run.finals.first_final_ms:
        if time.time() > deadline:
            raise RuntimeError(
                f"the warm-up call ({seconds:.0f} s) has no final row {timeout_s:.0f} s after "
                f"the job started; see {run.log}"
            )
        run.sleep_until(time.time() + 0.5)


def bench_capacity(args: argparse.Namespace) -> int:
    from beam_jobs.bench.batch import build_corpus, corpus_dir
    from beam_jobs.demo.live import LiveFollower
    from beam_jobs.demo.producer import new_producer, send_events
    from beam_jobs.services.local import create_topic, default_broker, unique_name

    _psutil()
    soak_s = parse_duration_s(args.soak) if args.soak else 0.0
    levels = (args.calls,) if soak_s else parse_levels(args.levels)
    hold_s = soak_s or args.hold_s
    folder = Path(args.corpus_dir) if args.corpus_dir else corpus_dir(args.pool_minutes)
    print(f"call pool: {folder} (at least {args.pool_minutes:g} min; built once) ...", flush=True)
    pool = Pool(build_corpus(folder, args.pool_minutes))
    mean_s, speech = pool.stats()
    print(f"  {len(pool.paths)} calls, mean {mean_s:.1f} s; 100 ms frames with speech: agent "
          f"{speech['agent']:.0%}, customer {speech['customer']:.0%}, either "
          f"{speech['either']:.0%}")  # fmt: skip

    broker = None
    if args.bootstrap_servers:
        bootstrap = args.bootstrap_servers
    else:
        broker = default_broker()
        if broker.is_running():
            broker = None  # not ours to stop
        else:
            print(f"Kafka: starting {default_broker().bootstrap_servers} (stopped at the end)")
            broker.start()
        bootstrap = default_broker().bootstrap_servers
    kafka_pid = _listener_pid(int(bootstrap.rsplit(":", 1)[1]))
    topic, live = unique_name("callqa.bench-cap"), unique_name("callqa.bench-cap-live")
    create_topic(bootstrap, topic, 4)
    create_topic(bootstrap, live, 2)
    work = Path(tempfile.mkdtemp(prefix="callqa-bench-cap-"))
    argv = [
        "--streaming",
        f"--asr={args.asr}",
        f"--kafka_bootstrap_servers={bootstrap}",
        f"--kafka_topic={topic}",
        f"--kafka_group_id={topic}",
        f"--output_dir={work / 'out'}",
        f"--transcripts_topic={live}",
        *args.job_args,
    ]
    print(f"job: callqa run {' '.join(argv)}", flush=True)
    log = work / "job.log"
    job = start_job(argv, log)
    scheduler = CallScheduler(pool.load, len(pool.paths))
    follower = LiveFollower(bootstrap, live)
    iceberg = job_warehouse(args.job_args, work / "out")
    finals: FinalRowWatcher | FinalCommitWatcher
    if iceberg is None:
        finals = FinalRowWatcher(work / "out" / "calls")
    else:  # a final row is readable once its commit is: the criterion waits an interval more
        finals = FinalCommitWatcher(iceberg.catalog)
    spy = Spy(job.pid)
    run = Run(job, log, scheduler, follower, finals, {}, spy, mean_s)
    if iceberg is not None:
        run.final_max_s = FINAL_P95_MAX_S + iceberg.commit_interval_s
    results: list[tuple[int, LevelResult]] = []
    sender: threading.Thread | None = None
    try:
        t_start = time.time()
        _warm_up(run, bootstrap, topic, pool, args.startup_timeout_s)
        print(f"warm-up: job up and a {WARMUP_S:g} s call's final row readable in "
              f"{time.time() - t_start:.0f} s")  # fmt: skip
        if not spy.probe():
            print(f"stage breakdown: {spy.note}")
        run.groups = process_groups(job.pid, kafka_pid)
        spy.procs = run.groups["job"]
        sizes = {k: len(v) for k, v in run.groups.items()}
        print(f"processes: {sizes} (kafka pid {kafka_pid})", flush=True)

        def send() -> None:
            try:
                send_events(new_producer(bootstrap), topic, scheduler.events(), realtime=True,
                            progress=False)  # fmt: skip
            except BaseException as exc:  # noqa: BLE001  # reported by Run.check
                run.sender_error.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        what = f"soak: {levels[0]} calls for {hold_s / 60:g} min" if soak_s else (
            f"levels {','.join(map(str, levels))}: each ramped, held {hold_s:g} s, "
            f"+{args.grace_s:g} s for its last results"
        )  # fmt: skip
        print(f"{what}; RSS and lag every minute" if soak_s else what, flush=True)
        print()
        print(HEADER, flush=True)
        for n in levels:
            r = _measure_level(run, n, hold_s, args.grace_s, args.spy_s, bool(soak_s))
            results.append((n, r))
            print(format_row(n, r))
            print(f"{'':>6}{r.stages}", flush=True)
            if r.slowest:
                print(f"{'':>6}slowest transcripts: {'; '.join(r.slowest)}", flush=True)
            if verdict(r) and not args.keep_going:
                break
        calls = [*([run.warm] if run.warm else []), *scheduler.calls.values()]
        complete = {
            c.call_id: (c.end_ms - c.start_ms) / 1000
            for c in calls
            if c.call_id == WARMUP_CALL_ID or c.call_id in finals.first_final_ms
        }
        events = [e for _, e in list(follower.events)]
    finally:
        scheduler.stop()
        if sender is not None:
            sender.join(timeout=30)
        follower.close()
        finals.close()
        stop_job(job)
        if broker is not None:
            broker.stop()
    try:
        if iceberg is not None:
            _report_warehouse(iceberg)
        return _report(args, pool, scheduler, events, complete, results, soak=bool(soak_s))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _report_warehouse(iceberg: IcebergSinkConfig) -> None:
    """The tables' commits over the run, then ``callqa warehouse maintain`` on them (the job
    has stopped: orphans need no grace time) and what it left."""
    from beam_jobs.warehouse import format_maintenance
    from transforms.io.iceberg_maintenance import commit_stats, maintain

    interval_s = iceberg.commit_interval_s
    print()
    print(f"warehouse: Iceberg commits over the run (commit interval {interval_s:g} s)")
    print(format_commit_stats(commit_stats(iceberg.catalog, interval_s), interval_s))
    t0 = time.perf_counter()
    reports = maintain(iceberg.catalog, orphan_grace_s=0)
    print(f"callqa warehouse maintain (orphan grace 0: the job has stopped), "
          f"{time.perf_counter() - t0:.1f} s:")  # fmt: skip
    print(format_maintenance(reports))


def _report(
    args: argparse.Namespace,
    pool: Pool,
    scheduler: CallScheduler,
    events: list[dict[str, Any]],
    complete: Mapping[str, float],
    results: list[tuple[int, LevelResult]],
    soak: bool,
) -> int:
    print()
    final_max_s = results[0][1].final_max_s if results else FINAL_P95_MAX_S
    print(f"latencies: end of utterance → transcript on the live topic; end of call → final row "
          f"readable; lag: wall clock − latest event time published (smallest in the hold's "
          f"first / last {LAG_WINDOW_MAX_S:g} s). Criteria: p95 ≤ {TRANSCRIPT_P95_MAX_S:g} s, "
          f"final p95 ≤ {final_max_s:g} s (Iceberg: {FINAL_P95_MAX_S:g} s + the commit interval), "
          f"lag growth ≤ {LAG_GROWTH_MAX_S:g} s")  # fmt: skip
    cap = capacity([(n, not verdict(r)) for n, r in results])
    if soak:
        why = "; ".join(verdict(results[-1][1])) if results else "no result"
        print(f"soak: {'held' if cap else 'not held'} ({why or 'ok'})")
        return 0 if cap else 1
    from beam_jobs.ceiling import batched_speech_rate, utterances_from_recordings
    from beam_jobs.config import resolve_asr_dir
    from transforms.asr.options import AsrOptions

    measured = [e for e in events if e["call_id"] != WARMUP_CALL_ID]
    paths = {c.call_id: str(pool.paths[c.pool_index]) for c in scheduler.calls.values()}
    starts = {c.call_id: c.start_ms for c in scheduler.calls.values()}
    utts = utterances_from_recordings(measured, paths, starts, args.ceiling_speech_s)
    per_call_s = speech_per_call_second(
        ((e["call_id"], e["start_ms"], e["end_ms"]) for e in events), complete
    )
    if not utts or not per_call_s:
        print("ceiling: no utterances to measure it on")
        return 1
    print(f"ceiling: the backend batched by hand on {len(utts)} of the run's utterances "
          f"(nothing else running) ...", flush=True)  # fmt: skip
    rate = batched_speech_rate(AsrOptions(model_dir=resolve_asr_dir(args.asr)), utts)
    ceiling_calls = rate / per_call_s
    print(f"ceiling: {rate:.2f} s of speech per s; the calls hold {per_call_s:.2f} s of speech "
          f"(both channels, as cut) per call-second ({len(complete)} complete calls) → "
          f"{ceiling_calls:.1f} calls")  # fmt: skip
    print(f"capacity: {cap} calls = {cap / ceiling_calls:.2f} of the ceiling "
          f"({ceiling_calls:.1f} calls)")  # fmt: skip
    _print_latency_floor(resolve_asr_dir(args.asr), utts[:FLOOR_UTTERANCES])
    return 0


def _print_latency_floor(model_dir: str, utts: Sequence[Any]) -> None:
    """What one utterance's transcript needs on this machine with nothing else running: the
    VAD's wait for it to settle, and its decode alone as a streaming queue decodes it."""
    from beam_jobs.ceiling import one_at_a_time_seconds
    from transforms.asr.options import AsrOptions
    from transforms.asr.transcribe import resolve_queues
    from transforms.core.segmentation import SegmentOptions, settled_margin_ms

    opts = resolve_queues(AsrOptions(model_dir=model_dir))
    secs = one_at_a_time_seconds(opts, utts)
    seg = SegmentOptions()
    settle_s = settled_margin_ms(seg) / 1000
    vad_s = settle_s + seg.vad_step_ms / 1000
    p50, p95 = quantile(secs, 0.5) or 0.0, quantile(secs, 0.95) or 0.0
    print(f"latency floor (nothing else running): cut {settle_s:.2f}-{vad_s:.2f} s after the "
          f"utterance ends (VAD settle + step), decode alone p50 {p50:.2f} s / p95 {p95:.2f} s "
          f"({len(secs)} utterances, {opts.queues} queue(s)) → transcript p95 ≥ "
          f"{vad_s + p95:.2f} s before any hop or queueing "
          f"(criterion {TRANSCRIPT_P95_MAX_S:g} s)")  # fmt: skip


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="callqa bench capacity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--levels", default=DEFAULT_LEVELS, help="live calls per level, increasing")
    ap.add_argument("--hold-s", type=float, default=180.0, help="each level, after its ramp")
    ap.add_argument("--grace-s", type=float, default=10.0, help="load kept while results arrive")
    ap.add_argument("--keep-going", action="store_true", help="go on after a level fails")
    ap.add_argument("--soak", default="", help="hold --calls for this long (30m, 1h, 90s, 90)")
    ap.add_argument("--calls", type=int, default=4, help="with --soak: live calls")
    ap.add_argument("--asr", default="embedded", help="embedded | a model directory")
    ap.add_argument("--pool-minutes", type=float, default=30.0, help="the cached call pool")
    ap.add_argument("--corpus-dir", default="", help="default: the callqa cache")
    ap.add_argument("--bootstrap-servers", default="", help="default: the local broker")
    ap.add_argument("--spy-s", type=float, default=30.0, help="py-spy window per level")
    ap.add_argument("--ceiling-speech-s", type=float, default=120.0,
                    help="speech the ceiling is measured on")  # fmt: skip
    ap.add_argument("--startup-timeout-s", type=float, default=600.0)
    ap.add_argument(
        "job_args", nargs="*", help="extra job options (after --), e.g. --asr_beam_size=1"
    )
    args = ap.parse_args(argv)
    if args.hold_s <= 0 or args.grace_s < 0 or args.calls < 1:
        raise ValueError("--hold-s must be > 0, --grace-s >= 0, --calls >= 1")
    return bench_capacity(args)
