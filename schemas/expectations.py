"""Data-quality suites of the warehouse tables, as plain data, and the one function that runs them.

A suite is a list of ``ExpectationSpec``: a great_expectations (GX) expectation class name, its
keyword arguments, an optional row condition and a short stable ``id`` (``[a-z0-9_]+``, used in
quarantine records and metric names). Suites are pure data so they can be read, diffed and
tested without GX; GX is imported only when a ``FrameValidator`` is built (``setup()`` of the
validating DoFn), never at import time.

Rows are validated as a flat pandas DataFrame: nested records become dotted columns
(``metrics.agent_talk_ratio``, ``metrics.sentiment_quarters.q1``); list columns (keywords,
words, scorecard answers) are left out. Column expectations skip nulls, so a nullable column
passes when null: ``metrics.*`` are all null on a row without ASR.

Example::

    validator = FrameValidator("calls")          # GX context, suite and batch definition, once
    failed = validator.validate(frame_of("calls", rows))
    failed[0]                                    # frozenset({"end_not_before_start"}) or empty
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from schemas.tables import TABLES, to_arrow_value

if TYPE_CHECKING:
    import pandas as pd

#: Version of the suites; bump when an expectation is added, removed or changes meaning, so a
#: quarantined row can be traced to the rules that held it back.
SUITE_VERSION: Final = "2"  # 2: suites for scorecard_answers and quarantine

_ID_PATTERN: Final = re.compile(r"^[a-z0-9_]+$")
_CONDITION_OPERATORS: Final = ("==", "!=", "<", "<=", ">", ">=", "is_null", "is_not_null")


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: GX class name + kwargs, optionally only on rows where ``condition``
    holds (``(column, operator, value)``, e.g. ``("is_final", "==", True)``; ``is_null`` and
    ``is_not_null`` ignore the value)."""

    id: str
    expectation: str  # a class name in ``great_expectations.expectations``
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    condition: tuple[str, str, Any] | None = None

    def __post_init__(self) -> None:
        if not _ID_PATTERN.match(self.id):
            raise ValueError(f"expectation id {self.id!r} must match {_ID_PATTERN.pattern}")
        if self.condition is not None and self.condition[1] not in _CONDITION_OPERATORS:
            raise ValueError(f"{self.id}: condition operator must be one of {_CONDITION_OPERATORS}")


class SuiteError(RuntimeError):
    """GX could not evaluate an expectation (a broken checker, not a bad row)."""


def _not_null(id_: str, column: str) -> ExpectationSpec:
    return ExpectationSpec(id_, "ExpectColumnValuesToNotBeNull", {"column": column})


def _between(
    id_: str,
    column: str,
    min_value: float | None = None,
    max_value: float | None = None,
    condition: tuple[str, str, Any] | None = None,
) -> ExpectationSpec:
    kwargs: dict[str, Any] = {"column": column}
    if min_value is not None:
        kwargs["min_value"] = min_value
    if max_value is not None:
        kwargs["max_value"] = max_value
    return ExpectationSpec(id_, "ExpectColumnValuesToBeBetween", kwargs, condition)


def _in_set(id_: str, column: str, values: Iterable[str]) -> ExpectationSpec:
    return ExpectationSpec(
        id_, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": sorted(values)}
    )


def _regex(id_: str, column: str, regex: str) -> ExpectationSpec:
    return ExpectationSpec(
        id_, "ExpectColumnValuesToMatchRegex", {"column": column, "regex": regex}
    )


def _non_empty(id_: str, column: str) -> ExpectationSpec:
    return ExpectationSpec(
        id_, "ExpectColumnValueLengthsToBeBetween", {"column": column, "min_value": 1}
    )


def _equal(
    id_: str, column_a: str, column_b: str, condition: tuple[str, str, Any] | None = None
) -> ExpectationSpec:
    return ExpectationSpec(
        id_,
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": column_a, "column_B": column_b},
        condition,
    )


def _at_least(id_: str, column_a: str, column_b: str) -> ExpectationSpec:
    """``column_a >= column_b`` on every row where both are set."""
    return ExpectationSpec(
        id_,
        "ExpectColumnPairValuesAToBeGreaterThanB",
        {
            "column_A": column_a,
            "column_B": column_b,
            "or_equal": True,
            "ignore_row_if": "either_value_is_missing",
        },
    )


_CALL_ID_REGEX: Final = r"^.{1,128}$"  # non-empty, one line, short enough for a file name
_QUARTERS: Final = ("q1", "q2", "q3", "q4")

_CALLS: Final = (
    _not_null("call_id_not_null", "call_id"),
    _regex("call_id_format", "call_id", _CALL_ID_REGEX),
    _between("version_nonnegative", "version", min_value=0),
    # version counts final rows: the first final row is 1 (live rows may still be 0)
    _between("final_version_positive", "version", min_value=1, condition=("is_final", "==", True)),
    _in_set(
        "close_reason_known",
        "close_reason",
        ("live", "end_of_call", "inactivity", "late_correction"),
    ),
    _at_least("end_not_before_start", "end_ms", "start_ms"),
    _between("agent_audio_nonnegative", "agent_audio_s", min_value=0),
    _between("customer_audio_nonnegative", "customer_audio_s", min_value=0),
    _between("mixed_audio_nonnegative", "mixed_audio_s", min_value=0),
    _between("chunk_count_positive", "chunk_count", min_value=1),
    _between("duplicate_chunks_nonnegative", "duplicate_chunks", min_value=0),
    _between("missing_seq_count_nonnegative", "missing_seq_count", min_value=0),
    _between("talk_ratio_range", "metrics.agent_talk_ratio", 0, 1),
    _between("non_talk_nonnegative", "metrics.non_talk_s", min_value=0),
    _at_least(
        "longest_non_talk_within_duration", "metrics.duration_s", "metrics.longest_non_talk_s"
    ),
    _between("sentiment_range", "metrics.sentiment", -1, 1),
    _between("agent_sentiment_range", "metrics.agent_sentiment", -1, 1),
    _between("customer_sentiment_range", "metrics.customer_sentiment", -1, 1),
    *(
        _between(f"sentiment_{q}_range", f"metrics.sentiment_quarters.{q}", -1, 1)
        for q in _QUARTERS
    ),
    *(
        _between(f"customer_sentiment_{q}_range", f"metrics.customer_sentiment_quarters.{q}", -1, 1)
        for q in _QUARTERS
    ),
    *(
        _between(f"agent_sentiment_{q}_range", f"metrics.agent_sentiment_quarters.{q}", -1, 1)
        for q in _QUARTERS
    ),
    # last quarter minus first quarter of a -1..1 score
    _between("sentiment_trajectory_range", "metrics.sentiment_trajectory", -2, 2),
    _between("zh_share_range", "metrics.zh_share", 0, 1),
    _between("en_share_range", "metrics.en_share", 0, 1),
    _between("zh_en_share_range", "metrics.zh_en_share", 0, 1),
    # log-probabilities
    _between("mean_confidence_nonpositive", "metrics.mean_confidence", max_value=0),
    _between("min_confidence_nonpositive", "metrics.min_confidence", max_value=0),
    _between("normalized_score_range", "scorecard.normalized_score", 0, 1),
)

_TRANSCRIPTS: Final = (
    _not_null("call_id_not_null", "call_id"),
    _regex("call_id_format", "call_id", _CALL_ID_REGEX),
    _in_set("channel_known", "channel", ("agent", "customer", "mixed")),
    _at_least("end_not_before_start", "end_ms", "start_ms"),
    _between("confidence_nonpositive", "confidence", max_value=0),  # a mean log-probability
    _in_set("language_class_known", "language_class", ("en", "zh", "zh-en", "other", "")),
    _between("sentiment_range", "sentiment", -1, 1),
    _between("pii_redactions_nonnegative", "pii_redactions", min_value=0),
)

_DEAD_LETTERS: Final = (
    _not_null("stage_not_null", "stage"),
    _non_empty("stage_not_empty", "stage"),
    _not_null("reason_not_null", "reason"),
    _non_empty("reason_not_empty", "reason"),
    _not_null("message_not_null", "message"),
)

#: Checked with their call row (``transforms.validate``): a failing answer holds back the
#: call row and its answers together, so the two tables never disagree.
_SCORECARD_ANSWERS: Final = (
    _not_null("call_id_not_null", "call_id"),
    _regex("call_id_format", "call_id", _CALL_ID_REGEX),
    _between("version_positive", "version", min_value=1),  # answers belong to final rows
    _non_empty("scorecard_not_empty", "scorecard"),
    _non_empty("question_id_not_empty", "question_id"),
    _between("points_nonnegative", "points", min_value=0),
    _at_least("points_within_potential", "potential", "points"),
    _equal("passed_earns_potential", "points", "potential", ("passed", "==", True)),
    _between("failed_earns_nothing", "points", 0, 0, ("passed", "==", False)),
    _between(
        "positive_weight_when_asked",
        "potential",
        min_value=1e-9,
        condition=("passed", "is_not_null", None),
    ),  # fmt: skip
    _between("not_applicable_has_no_potential", "potential", 0, 0, ("passed", "is_null", None)),
)

#: The end of the line: a quarantine record failing this suite is still written (see
#: ``transforms.validate``), its own failures added as ``quarantine.<id>``.
_QUARANTINE: Final = (
    _in_set("table_known", "table", ("calls", "transcripts", "dead_letters")),
    _non_empty("row_key_not_empty", "row_key"),
    _in_set("suite_version_current", "suite_version", (SUITE_VERSION,)),
    ExpectationSpec(
        "row_json_parseable", "ExpectColumnValuesToBeJsonParseable", {"column": "row_json"}
    ),  # fmt: skip
)

_SUITES: Final[dict[str, tuple[ExpectationSpec, ...]]] = {
    "calls": _CALLS,
    "transcripts": _TRANSCRIPTS,
    "dead_letters": _DEAD_LETTERS,
    "scorecard_answers": _SCORECARD_ANSWERS,
    "quarantine": _QUARANTINE,
}


def suite_for(table_name: str) -> list[ExpectationSpec]:
    """The expectation suite of a warehouse table (``calls``, ``transcripts``, ``dead_letters``,
    ``scorecard_answers``, ``quarantine``)."""
    if table_name not in _SUITES:
        raise KeyError(f"no expectation suite for table {table_name!r}; known: {sorted(_SUITES)}")
    return list(_SUITES[table_name])


def _flat_fields(schema_fields: Iterable[pa.Field]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for f in schema_fields:
        if pa.types.is_struct(f.type):
            paths.extend((f.name, *p) for p in _flat_fields(f.type))
        elif not pa.types.is_list(f.type):
            paths.append((f.name,))
    return paths


def _table_schema(table_name: str) -> pa.Schema:
    for t in TABLES:
        if t.name == table_name:
            return t.schema
    raise KeyError(f"no warehouse table {table_name!r}; known: {sorted(t.name for t in TABLES)}")


def flat_columns(table_name: str) -> list[str]:
    """The DataFrame columns a table's rows validate as: scalar leaves, dotted, in field order."""
    return [".".join(p) for p in _flat_fields(_table_schema(table_name))]


def _leaf(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if value is None:
            return None
        value = value[key]
    return value


def flat_row(table_name: str, row: Any) -> dict[str, Any]:
    """One record as a flat ``{dotted column: value}`` dict (a missing nested record: nulls)."""
    paths = _flat_fields(_table_schema(table_name))
    values = {name: to_arrow_value(getattr(row, name)) for name in {p[0] for p in paths}}
    return {".".join(p): _leaf(values[p[0]], p[1:]) for p in paths}


def frame_of(table_name: str, rows: Sequence[Any]) -> pd.DataFrame:
    """The rows of a table as the DataFrame its suite runs on (index 0..n-1, row order kept)."""
    import pandas as pd

    return pd.DataFrame.from_records(
        [flat_row(table_name, r) for r in rows], columns=flat_columns(table_name)
    )


class FrameValidator:
    """A table's suite bound to one GX ephemeral context (build once, e.g. in ``setup()``).

    ``validate(df)`` returns, for each row of ``df`` in order, the ids of the expectations it
    failed. A failed expectation that names no rows (a table-level one) fails every row.
    Raises ``SuiteError`` when GX cannot evaluate an expectation (a missing column, say).
    """

    def __init__(self, table_name: str, specs: Sequence[ExpectationSpec] | None = None) -> None:
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.table_name = table_name
        self.specs = tuple(suite_for(table_name) if specs is None else specs)
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            # tqdm bars on stderr for every validation otherwise
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        )
        self._context = gx.get_context(mode="ephemeral", project_config=config)
        source = self._context.data_sources.add_pandas(f"callqa_{table_name}")
        asset = source.add_dataframe_asset(table_name)
        self._batch_definition = asset.add_batch_definition_whole_dataframe("rows")
        suite = gx.ExpectationSuite(name=f"callqa.{table_name}.v{SUITE_VERSION}")
        for spec in self.specs:
            kwargs = dict(spec.kwargs)
            if spec.condition is not None:
                kwargs["row_condition"] = _gx_condition(spec.condition)
            suite.add_expectation(getattr(gxe, spec.expectation)(**kwargs, meta={"id": spec.id}))
        self._suite = self._context.suites.add(suite)

    def validate(self, df: pd.DataFrame) -> list[frozenset[str]]:
        if len(df) == 0:
            return []
        df = df.reset_index(drop=True)  # GX reports index labels; make them row positions
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": df})
        # Rows almost always pass: a pass/fail run first, and the rows behind a failure (or
        # the error of an expectation that raised) only when something did not pass.
        if self._run(batch, "BOOLEAN_ONLY").success:
            return [frozenset()] * len(df)
        report = self._run(batch, "COMPLETE")
        failed: list[set[str]] = [set() for _ in range(len(df))]
        for result in report.results:
            config = result.expectation_config
            if config is None or not config.meta or "id" not in config.meta:
                raise SuiteError(f"{self.table_name}: a GX result names no callqa expectation")
            spec_id = config.meta["id"]
            error = _exception_message(result.exception_info)
            if error is not None:
                raise SuiteError(f"{self.table_name}: expectation {spec_id} could not run: {error}")
            if result.success:
                continue
            indexes = result.result.get("unexpected_index_list")
            rows = range(len(df)) if indexes is None else (int(i) for i in indexes)
            for i in rows:
                failed[i].add(spec_id)
        return [frozenset(f) for f in failed]

    def _run(self, batch: Any, result_format: str) -> Any:
        try:
            return batch.validate(self._suite, result_format={"result_format": result_format})
        except Exception as exc:  # GX internals: anything it raises is a checker failure
            raise SuiteError(f"{self.table_name}: validation raised {exc!r}") from exc


def _exception_message(info: Any) -> str | None:
    """The error of a result that raised, else None. GX reports it flat
    (``{"raised_exception": True, ...}``) or per metric (``{metric id: {...}}``)."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for nested in info.values():
        if isinstance(nested, Mapping) and nested.get("raised_exception"):
            return str(nested.get("exception_message"))
    return None


def _gx_condition(condition: tuple[str, str, Any]) -> Any:
    from great_expectations.expectations.row_conditions import Column

    column, op, value = condition
    col = Column(column)
    if op == "is_null":
        return col.is_null()
    if op == "is_not_null":
        return col.is_not_null()
    return {
        "==": col.__eq__,
        "!=": col.__ne__,
        "<": col.__lt__,
        "<=": col.__le__,
        ">": col.__gt__,
        ">=": col.__ge__,
    }[op](value)


def validate_frame(
    table_name: str, df: pd.DataFrame, validator: FrameValidator | None = None
) -> list[frozenset[str]]:
    """Per row of ``df`` (in order), the ids of the expectations of ``table_name``'s suite it
    failed. Pass the ``validator`` built in ``setup()``; without one a new GX context is
    created (fine in a test or a notebook, too slow per batch)."""
    if validator is None:
        validator = FrameValidator(table_name)
    elif validator.table_name != table_name:
        raise ValueError(f"validator is for {validator.table_name!r}, not {table_name!r}")
    return validator.validate(df)
