"""Warehouse tables: Arrow schemas derived from the records (never typed twice) and layout.

A golden test pins these schemas; changing one is a contract change (bump ``TABLE_VERSION``).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Final, NamedTuple

import pyarrow as pa

from schemas.records import CallRow, DeadLetter, QuarantinedRow, ScorecardAnswerRow, Transcript

#: Version of the warehouse schema, stored in every file's Arrow metadata.
TABLE_VERSION: Final = "4"  # 4: scorecard answers' passed is null when not applicable
# (3: calls gained metrics and scorecard; transcripts speech_dbfs,
# sentiment, pii_redactions (2: transcripts gained language_class, words, alternatives)

_ARROW_TYPES: Final[dict[type, pa.DataType]] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
}


def _is_record(hint: object) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def _arrow_type(name: str, hint: object) -> pa.DataType:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{name}: only tuple[X, ...] maps to an Arrow list, got {hint}")
        # "element": the Parquet list layout's name, so a nested list reads back as it was written.
        return pa.list_(pa.field("element", _arrow_type(name, args[0]), nullable=False))
    if _is_record(hint):
        return pa.struct(_record_fields(typing.cast(type, hint)))
    if hint not in _ARROW_TYPES:
        raise TypeError(f"{name}: no Arrow type for {hint}")
    return _ARROW_TYPES[typing.cast(type, hint)]


def _arrow_field(name: str, hint: object) -> pa.Field:
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{name}: only Optional[X] unions map to Arrow, got {hint}")
        nullable = True
        hint = args[0]
    return pa.field(name, _arrow_type(name, hint), nullable=nullable)


def _record_fields(record_type: type) -> list[pa.Field]:
    hints = typing.get_type_hints(record_type)
    return [_arrow_field(name, hints[name]) for name in record_type._fields]  # type: ignore[attr-defined]


def arrow_schema(record_type: type[NamedTuple], table: str) -> pa.Schema:
    """The Arrow schema of ``record_type``: one column per field, in field order. Nested
    records become structs and ``tuple[X, ...]`` a list."""
    return pa.schema(
        _record_fields(record_type),
        metadata={"callqa.table": table, "callqa.version": TABLE_VERSION},
    )


def to_arrow_value(value: Any) -> Any:
    """A field value as pyarrow takes it: nested records → dicts, tuples → lists."""
    if isinstance(value, tuple):
        if hasattr(value, "_asdict"):
            return {k: to_arrow_value(v) for k, v in value._asdict().items()}
        return [to_arrow_value(v) for v in value]
    return value


def from_arrow_row(record_type: Any, row: dict[str, Any]) -> Any:
    """The inverse of ``to_arrow_value`` for one row read back from Parquet."""
    hints = typing.get_type_hints(record_type)
    return record_type(**{k: _from_arrow(hints[k], v) for k, v in row.items()})


def _from_arrow(hint: object, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))  # Optional[X]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_from_arrow(item, v) for v in value)
    if _is_record(hint):
        return from_arrow_row(hint, value)
    return value


class Table(NamedTuple):
    """A warehouse table: its directory under the output root and its row schema."""

    name: str
    record_type: Any  # the NamedTuple class of its rows
    schema: pa.Schema


CALLS: Final = Table("calls", CallRow, arrow_schema(CallRow, "calls"))
DEAD_LETTERS: Final = Table("dead_letters", DeadLetter, arrow_schema(DeadLetter, "dead_letters"))
TRANSCRIPTS: Final = Table("transcripts", Transcript, arrow_schema(Transcript, "transcripts"))
SCORECARD_ANSWERS: Final = Table(
    "scorecard_answers", ScorecardAnswerRow, arrow_schema(ScorecardAnswerRow, "scorecard_answers")
)
QUARANTINE: Final = Table("quarantine", QuarantinedRow, arrow_schema(QuarantinedRow, "quarantine"))
TABLES: Final = (CALLS, DEAD_LETTERS, TRANSCRIPTS, SCORECARD_ANSWERS, QUARANTINE)
