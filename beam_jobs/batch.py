"""``callqa batch``: the same stages over historic recordings on disk (no Kafka).

    recordings ─ReadRecordings─► KafkaRecord ─DecodeAndValidate─► … ─► calls/, dead_letters/
                                         (with --asr: ─SegmentSpeech─Transcribe─► transcripts/)

Call id = the file's stem; event time of its first sample = the file's modification time
minus its duration. A file that cannot be processed (unreadable, unsupported, too long, a call
id another file of the run has) is a dead letter; the others go on.

Resumable: a call whose complete final row is already in ``--output_dir`` is skipped
(``--reprocess`` runs it again, as a new version). A rerun after an interruption does what is
left; one after a clean run reports "0 to do". The run ends with a per-file table (also
written as JSON) and its throughput in audio hours per wall hour, beside the ASR backend's
batched ceiling measured in the same run. Exit status 1 when a file has no complete row.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from beam_jobs import warehouse
from beam_jobs.config import (
    JobConfig,
    StreamingJobOptions,
    aggregation_config,
    analyze_options,
    asr_options,
    segment_options,
    warehouse_config,
)
from beam_jobs.pipeline import build_pipeline
from beam_jobs.runner import runner_options, wait_until_finish
from schemas.records import RecordingTask
from schemas.tables import CALLS, DEAD_LETTERS
from transforms.io.parquet_sink import safe_name
from transforms.io.recordings import (
    READ_STAGE,
    ReadRecordings,
    RecordingsConfig,
    probe_recording,
    recording_tasks,
)

PROCESSED: Final = "processed"  # a complete final row written by this run
SKIPPED: Final = "skipped"  # already complete in the output (no --reprocess)
FAILED: Final = "failed"  # dead-lettered before processing (unreadable, too long, ...)
INCOMPLETE: Final = "incomplete"  # a final row without all its transcripts
PARTIAL: Final = "partial"  # a final row, but some utterances failed transcription
MISSING: Final = "missing"  # neither a row nor a dead letter (the job failed)
_OK: Final = (PROCESSED, SKIPPED)
#: Files are not a live stream: 1 s chunks are 10x fewer elements through the runner than a
#: telephony producer's 100 ms, and bounded runs segment each channel whole, so nothing else
#: changes. With cross-bundle ASR batching, 30 min of recordings took 367 s instead of 463 s.
BATCH_CHUNK_MS: Final = 1000
#: A bounded run segments every channel only when the watermark reaches the end of its input,
#: so all of a run's audio waits in segmentation state first: 3 minutes into 30 minutes of
#: recordings the launcher held 1.2 GB and Prism 1.0 GB. Waves of one audio hour bound that;
#: each costs one Prism start (seconds), and an interrupted run resumes at its wave.
DEFAULT_WAVE_AUDIO_S: Final = 3600.0


class BatchJobOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # type: ignore[no-untyped-def]
        g = parser.add_argument_group("callqa batch")
        g.add_argument(
            "--recordings", action="append", default=[],
            help="audio file or glob (wav/flac/mp3); repeat for more",
        )  # fmt: skip
        g.add_argument(
            "--chunk_ms", type=int, default=BATCH_CHUNK_MS,
            help="a file is cut into chunks this long (a telephony stream sends 100 ms)",
        )  # fmt: skip
        g.add_argument(
            "--reprocess", action="store_true",
            help="run calls whose complete final row exists again (as a new version)",
        )  # fmt: skip
        g.add_argument(
            "--max_recording_s", type=float, default=RecordingsConfig.max_recording_s,
            help="longer files are dead-lettered (recording_too_long)",
        )  # fmt: skip
        g.add_argument(
            "--wave_audio_s", type=float, default=DEFAULT_WAVE_AUDIO_S,
            help="files run in waves of at most this much audio, one pipeline each",
        )  # fmt: skip
        g.add_argument(
            "--summary_json", default="",
            help="where the per-file summary goes (default <output_dir>/batch_summary.json)",
        )  # fmt: skip
        g.add_argument(
            "--ceiling_sample_s", type=float, default=60.0,
            help="speech seconds the ASR ceiling is measured on after the run (0: off)",
        )  # fmt: skip
        g.add_argument(
            "--progress", choices=("auto", "on", "off"), default="auto",
            help="progress bar on stderr (auto: when it is a terminal)",
        )  # fmt: skip
        # --output_dir and --inactivity_gap_s are the streaming job's options (shared).


class FilePlan(NamedTuple):
    """One file of the run, as planned before it starts."""

    task: RecordingTask
    audio_s: float  # 0 when the header is unreadable (the job dead-letters it)
    prior_version: int  # final versions of the call already in the output
    skip: bool


class FileResult(NamedTuple):
    """One file's outcome: a row of the table and of the JSON summary."""

    path: str
    call_id: str
    status: str
    audio_s: float
    version: int | None
    transcripts: int | None
    transcript_failures: int | None
    detail: str


@dataclass(frozen=True)
class BatchConfig:
    tasks: tuple[RecordingTask, ...]
    recordings: RecordingsConfig
    job: JobConfig
    reprocess: bool
    wave_audio_s: float
    summary_json: str
    ceiling_sample_s: float
    progress: str


def batch_config(options: PipelineOptions) -> BatchConfig:
    o = options.view_as(BatchJobOptions)
    shared = options.view_as(StreamingJobOptions)
    if options.view_as(StandardOptions).streaming:
        raise ValueError("the batch job reads files once: drop --streaming")
    paths = sorted({p for pattern in o.recordings for p in glob_paths(pattern)})
    if not paths:
        raise ValueError("no recordings: pass --recordings=FILE_OR_GLOB (wav, flac, mp3)")
    if o.wave_audio_s <= 0:
        raise ValueError("--wave_audio_s must be > 0")
    if o.ceiling_sample_s < 0:
        raise ValueError("--ceiling_sample_s must be >= 0")
    asr = asr_options(shared, bounded=True)  # --asr and friends, as for the streaming job
    job = JobConfig(
        source=None,
        # no live rows for historic calls
        aggregation=aggregation_config(shared, asr, bounded=True, live_interval_s=0),
        output_dir=shared.output_dir,
        streaming=False,
        asr=asr,
        segment=segment_options(shared, bounded=True),
        analyze=analyze_options(shared),
        warehouse=warehouse_config(shared),  # --warehouse and the catalog, as streaming
    )
    return BatchConfig(
        tasks=tuple(recording_tasks(paths)),
        recordings=RecordingsConfig(chunk_ms=o.chunk_ms, max_recording_s=o.max_recording_s),
        job=job,
        reprocess=o.reprocess,
        wave_audio_s=o.wave_audio_s,
        summary_json=o.summary_json or str(Path(shared.output_dir) / "batch_summary.json"),
        ceiling_sample_s=o.ceiling_sample_s,
        progress=o.progress,
    )


def glob_paths(pattern: str) -> list[str]:
    """The files a ``--recordings`` value names (a plain path is kept even if missing: it
    becomes an ``unreadable_audio`` dead letter, not a silent omission)."""
    import glob

    if not glob.has_magic(pattern):
        return [pattern]
    return [p for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]


def waves(todo: Sequence[FilePlan], max_audio_s: float) -> list[list[FilePlan]]:
    """``todo`` in order, cut into runs of at most ``max_audio_s`` of audio (a longer file is a
    wave of its own; files of unknown length count as none)."""
    out: list[list[FilePlan]] = []
    total = 0.0
    for f in todo:
        if not out or (f.audio_s > 0 and total + f.audio_s > max_audio_s):
            out.append([])
            total = 0.0
        out[-1].append(f)
        total += f.audio_s
    return out


def row_complete(row: dict[str, Any], with_asr: bool) -> bool:
    """A stored final row that a run need not redo: with ASR, every utterance transcribed."""
    if not with_asr:
        return True
    m = row.get("metrics")
    return bool(m and m["transcripts_complete"] and not m["transcript_failures"])


def plan_files(
    tasks: Sequence[RecordingTask],
    stored: dict[str, dict[str, Any]],
    with_asr: bool,
    reprocess: bool,
) -> list[FilePlan]:
    """Which files to run: a call with a complete final row in ``stored`` (call id → latest
    final row) is skipped unless ``reprocess``; a call with an incomplete one is retried."""
    plans = []
    for task in tasks:
        row = stored.get(task.call_id)
        try:
            audio_s = probe_recording(task.path).duration_s
        except Exception:  # noqa: BLE001 - the job dead-letters it with the reason
            audio_s = 0.0
        done = row is not None and row_complete(row, with_asr) and task.duplicate_of is None
        plans.append(
            FilePlan(task, audio_s, int(row["version"]) if row else 0, done and not reprocess)
        )
    return plans


def file_results(
    plans: Sequence[FilePlan],
    stored: dict[str, dict[str, Any]],
    letters: Sequence[dict[str, Any]],
    with_asr: bool,
) -> list[FileResult]:
    """Each file's outcome from what the output holds after the run: ``stored`` (latest final
    row per call) and the ``read`` stage's dead letters."""
    read_letters = {(d["call_id"], d["partition"]): d for d in letters if d["stage"] == READ_STAGE}
    out = []
    for plan in plans:
        t = plan.task
        row = stored.get(t.call_id)
        version = int(row["version"]) if row else None
        m = (row or {}).get("metrics")
        n_tr = int(m["utterance_count"]) if m else None
        n_failed = int(m["transcript_failures"]) if m else None
        letter = read_letters.get((t.call_id, t.file_index))
        if plan.skip:
            status, detail = SKIPPED, f"final v{version} already in the output"
        elif letter is not None and (t.duplicate_of is not None or row is None or
                                     version == plan.prior_version):  # fmt: skip
            status, detail = FAILED, f"{letter['reason']}: {letter['message']}"
        elif row is None or version == plan.prior_version:
            status, detail = MISSING, "no final row and no dead letter: see the job's log"
        elif with_asr and not (m and m["transcripts_complete"]):
            status = INCOMPLETE
            detail = "final row without all its transcripts (see the dead letters)"
        elif n_failed:
            status, detail = PARTIAL, f"{n_failed} utterances failed transcription"
        else:
            status, detail = PROCESSED, ""
        out.append(
            FileResult(t.path, t.call_id, status, plan.audio_s, version, n_tr, n_failed, detail)
        )
    return out


@dataclass(frozen=True)
class Throughput:
    audio_s: float  # recording seconds processed by this run
    speech_s: float  # transcribed utterance seconds
    wall_s: float
    ceiling_speech_s_per_s: float | None  # the backend batched by hand, on this run's audio
    asr_busy_s: float = 0.0  # RunInference's time in the model, inside the job
    asr_batches: int = 0
    asr_utterances: int = 0
    waves: int = 1  # pipelines run (--wave_audio_s)

    @property
    def audio_h_per_wall_h(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ceiling_audio_h_per_wall_h(self) -> float | None:
        """The recordings' audio per second if only batched ASR ran (same speech share)."""
        if not self.ceiling_speech_s_per_s or self.speech_s <= 0:
            return None
        return self.audio_s / (self.speech_s / self.ceiling_speech_s_per_s)

    @property
    def fraction_of_ceiling(self) -> float | None:
        c = self.ceiling_audio_h_per_wall_h
        return self.audio_h_per_wall_h / c if c else None


def format_table(results: Sequence[FileResult]) -> str:
    """The per-file status table."""
    head = (
        f"{'file':<36} {'status':<11} {'audio s':>8} {'ver':>4} {'utts':>5} {'asr err':>7}  detail"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        name = Path(r.path).name
        name = name if len(name) <= 36 else name[:33] + "..."
        lines.append(
            f"{name:<36} {r.status:<11} {r.audio_s:>8.1f} {_opt(r.version):>4} "
            f"{_opt(r.transcripts):>5} {_opt(r.transcript_failures):>7}  {r.detail[:100]}"
        )
    return "\n".join(lines)


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def status_counts(results: Sequence[FileResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def summary_line(results: Sequence[FileResult], tp: Throughput | None) -> str:
    counts = status_counts(results)
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    lines = [f"callqa batch: {len(results)} recordings: {', '.join(parts)}"]
    if tp is not None and tp.audio_s > 0:
        line = (
            f"throughput: {tp.audio_s / 3600:.3f} audio h in {tp.wall_s:.0f} s"
            + (f" ({tp.waves} waves)" if tp.waves > 1 else "")
            + " = "
            f"{tp.audio_h_per_wall_h:.2f} audio h per wall h"
        )
        ceiling = tp.ceiling_audio_h_per_wall_h
        if ceiling is not None:
            line += (
                f"; ASR batched by hand on this run's speech: {ceiling:.2f} audio h per wall h "
                f"({tp.fraction_of_ceiling:.2f} of it)"
            )
        lines.append(line)
        if tp.asr_batches:
            lines.append(
                f"ASR in the job: busy {tp.asr_busy_s:.0f} s of the {tp.wall_s:.0f} s, "
                f"{tp.asr_utterances} utterances in {tp.asr_batches} batches"
            )
    return "\n".join(lines)


def write_summary(
    path: str, results: Sequence[FileResult], tp: Throughput | None, exit_code: int
) -> None:
    doc = {
        "files": [r._asdict() for r in results],
        "counts": status_counts(results),
        "exit_code": exit_code,
        "throughput": None
        if tp is None
        else {
            "audio_s": tp.audio_s,
            "speech_s": tp.speech_s,
            "wall_s": tp.wall_s,
            "audio_h_per_wall_h": tp.audio_h_per_wall_h,
            "ceiling_speech_s_per_s": tp.ceiling_speech_s_per_s,
            "ceiling_audio_h_per_wall_h": tp.ceiling_audio_h_per_wall_h,
            "fraction_of_ceiling": tp.fraction_of_ceiling,
            "asr_busy_s": tp.asr_busy_s,
            "asr_batches": tp.asr_batches,
            "asr_utterances": tp.asr_utterances,
            "waves": tp.waves,
        },
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


class _FinishedCalls:
    """The calls of one wave with a new final row or a read dead letter (for the progress bar).
    On Iceberg the tables are read again only after a new commit to one of them."""

    def __init__(self, root: str, prior: dict[str, int], iceberg: bool) -> None:
        self._root, self._prior, self._iceberg = root, prior, iceberg
        self._seen: tuple[str | None, ...] | None = None  # the snapshots last read
        self._done: set[str] = set()

    def __call__(self) -> set[str]:
        if not self._iceberg:
            return _finished_in_files(self._root, self._prior)
        snapshots = tuple(
            warehouse.snapshot_id(self._root, t) for t in (CALLS.name, DEAD_LETTERS.name)
        )
        if snapshots != self._seen:
            self._done, self._seen = _finished_in_tables(self._root, self._prior), snapshots
        return self._done


def _finished_in_files(root: str, prior: dict[str, int]) -> set[str]:
    """Parquet: from the file names only, no Parquet read."""
    by_name = {safe_name(c): c for c in prior}
    done = set()
    for f in (Path(root) / CALLS.name).rglob("*.final.parquet"):
        name, _, rest = f.name.rpartition(".v")  # <call>.v<version>.final.parquet
        call = by_name.get(name)
        if call is not None and int(rest.split(".")[0]) > prior[call]:
            done.add(call)
    for f in (Path(root) / DEAD_LETTERS.name).rglob(f"{READ_STAGE}.*.parquet"):
        stem = f.name.split(".", 2)[2].rsplit(".", 2)[0]  # read.<reason>.<call>.<digest>
        if stem in by_name:
            done.add(by_name[stem])
    return done


def _finished_in_tables(root: str, prior: dict[str, int]) -> set[str]:
    done = {
        r["call_id"]
        for r in warehouse.final_calls(root)
        if r["call_id"] in prior and r["version"] > prior[r["call_id"]]
    }
    return done | {
        d["call_id"]
        for d in warehouse.dead_letters(root)
        if d["stage"] == READ_STAGE and d["call_id"] in prior
    }


@contextmanager
def _progress(total_s: float, n_files: int, mode: str) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(
        total=round(total_s, 1),
        unit="audio s",
        desc="recordings",
        disable={"auto": None, "on": False, "off": True}[mode],
        file=sys.stderr,
        dynamic_ncols=True,
    )
    bar.set_postfix_str(f"files 0/{n_files}")
    try:
        yield bar
    finally:
        bar.close()


def build_batch_pipeline(
    p: beam.Pipeline, cfg: BatchConfig, tasks: Sequence[RecordingTask]
) -> None:
    """Wire one wave onto ``p``: ``tasks`` read as records, then the streaming job's stages
    (``build_pipeline``). Nothing runs or is read here (the Dataflow dry run builds it too)."""
    read = p | "ReadRecordings" >> ReadRecordings(list(tasks), cfg.recordings)
    build_pipeline(p, cfg.job, records=read.records, source_dead_letters=read.dead_letter)


def _run_pipeline(
    cfg: BatchConfig, options: PipelineOptions, wave: list[FilePlan], bar: Any, before: str
) -> tuple[float, int, int]:
    """Run the job over one wave, moving ``bar`` on; returns ``asr_stats``."""
    p = beam.Pipeline(options=options)
    build_batch_pipeline(p, cfg, [f.task for f in wave])
    result = p.run()
    prior = {f.task.call_id: f.prior_version for f in wave}
    seconds = {f.task.call_id: f.audio_s for f in wave}
    start_n = bar.n
    finished = _FinishedCalls(cfg.job.output_dir, prior, cfg.job.warehouse is not None)
    # One waiter: the portable runner's wait_until_finish(duration) starts a reader of the job's
    # message stream per call, and a second reader breaks the stream (gRPC error 8).
    ended: Future[Any] = Future()
    threading.Thread(target=_wait, args=(result, ended), name="batch-wait", daemon=True).start()
    while True:
        try:
            state = ended.result(timeout=2.0)
            break
        except FutureTimeout:
            done = finished()
            bar.n = round(start_n + sum(seconds[c] for c in done), 1)
            bar.set_postfix_str(f"{before}, this wave {len(done)}/{len(wave)} files")
    bar.n = round(start_n + sum(seconds.values()), 1)
    bar.refresh()
    if state != PipelineState.DONE:
        raise RuntimeError(f"the batch pipeline ended {state}; see the log above")
    return asr_stats(result)


def asr_stats(result: Any) -> tuple[float, int, int]:
    """(seconds the ASR model was busy, batches, utterances) from RunInference's metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    def dist(name: str) -> Any:
        found = result.metrics().query(MetricsFilter().with_name(name))["distributions"]
        return [d.committed for d in found if d.committed is not None]

    latency = dist("inference_batch_latency_micro_secs")
    sizes = dist("inference_request_batch_size")
    busy_s = sum(d.sum for d in latency) / 1e6
    return busy_s, sum(d.count for d in sizes), sum(d.sum for d in sizes)


def _wait(result: Any, ended: Future[Any]) -> None:
    try:
        ended.set_result(wait_until_finish(result))  # a lost runner: RunnerLost, one sentence
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
        ended.set_exception(exc)


def run_batch(argv: Sequence[str]) -> int:
    """Plan, run what is left, print the per-file table; the exit status (0: every file has a
    complete row)."""
    options = PipelineOptions(runner_options(list(argv)))
    cfg = batch_config(options)
    out = cfg.job.output_dir
    with_asr = cfg.job.asr is not None
    stored = {r["call_id"]: r for r in warehouse.final_calls(out)}
    plans = plan_files(cfg.tasks, stored, with_asr, cfg.reprocess)
    todo = [f for f in plans if not f.skip]
    skipped = len(plans) - len(todo)
    print(
        f"callqa batch: {len(plans)} recordings, {len(todo)} to do, {skipped} already final "
        f"in {out}" + (" (--reprocess runs them again)" if skipped else ""),
        file=sys.stderr,
    )
    tp = None
    if todo:
        versions = tuple((f.task.call_id, f.prior_version) for f in todo if f.prior_version)
        cfg = _with_prior_versions(cfg, versions)
        t0 = time.perf_counter()
        asr = (0.0, 0, 0)
        runs = waves(todo, cfg.wave_audio_s)
        with _progress(sum(f.audio_s for f in todo), len(todo), cfg.progress) as bar:
            for i, wave in enumerate(runs, 1):
                stats = _run_pipeline(cfg, options, wave, bar, f"wave {i}/{len(runs)}")
                asr = (asr[0] + stats[0], asr[1] + stats[1], asr[2] + stats[2])
        wall_s = time.perf_counter() - t0
        stored = {r["call_id"]: r for r in warehouse.final_calls(out)}
    results = file_results(plans, stored, warehouse.dead_letters(out), with_asr)
    if todo:
        tp = _throughput(cfg, results, stored, wall_s)
        tp = replace(tp, asr_busy_s=asr[0], asr_batches=asr[1], asr_utterances=asr[2],
                     waves=len(runs))  # fmt: skip
    code = 0 if all(r.status in _OK for r in results) else 1
    print(format_table(results))
    print(summary_line(results, tp))
    write_summary(cfg.summary_json, results, tp, code)
    print(f"summary: {cfg.summary_json}")
    return code


def _with_prior_versions(cfg: BatchConfig, versions: tuple[tuple[str, int], ...]) -> BatchConfig:
    return replace(
        cfg, job=replace(cfg.job, aggregation=replace(cfg.job.aggregation, prior_versions=versions))
    )


def _throughput(
    cfg: BatchConfig,
    results: Sequence[FileResult],
    stored: dict[str, dict[str, Any]],
    wall_s: float,
) -> Throughput:
    """This run's audio and speech, and (with ASR) the backend batched by hand on a sample of
    its utterances, cut from the same files (``stored``: the latest final row per call)."""
    ran = [r for r in results if r.status in (PROCESSED, PARTIAL, INCOMPLETE)]
    audio_s = sum(r.audio_s for r in ran)
    asr = cfg.job.asr
    if asr is None:
        return Throughput(audio_s, 0.0, wall_s, None)
    ids = {r.call_id for r in ran}
    rows = [t for t in warehouse.transcripts(cfg.job.output_dir) if t["call_id"] in ids]
    speech_s = sum((t["end_ms"] - t["start_ms"]) / 1000 for t in rows)
    ceiling = None
    if cfg.ceiling_sample_s > 0 and rows:
        from beam_jobs.ceiling import batched_speech_rate, utterances_from_recordings

        starts = {c: r["start_ms"] for c, r in stored.items()}
        paths = {r.call_id: r.path for r in ran}
        utts = utterances_from_recordings(rows, paths, starts, cfg.ceiling_sample_s)
        ceiling = batched_speech_rate(asr, utts)
    return Throughput(audio_s, speech_s, wall_s, ceiling)
