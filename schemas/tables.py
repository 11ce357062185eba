"""Warehouse tables: Arrow schemas derived from the records (never typed twice) and layout.

A golden test pins these schemas; changing one is a contract change (bump ``TABLE_VERSION``).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Final, NamedTuple

import pyarrow as pa

from schemas.records import CallRow, DeadLetter, Transcript

#: Version of the warehouse schema, stored in every file's Arrow metadata.
TABLE_VERSION: Final = "1"

_ARROW_TYPES: Final[dict[type, pa.DataType]] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
}


def _arrow_field(name: str, hint: object) -> pa.Field:
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{name}: only Optional[X] unions map to Arrow, got {hint}")
        nullable = True
        hint = args[0]
    if hint not in _ARROW_TYPES:
        raise TypeError(f"{name}: no Arrow type for {hint}")
    return pa.field(name, _ARROW_TYPES[typing.cast(type, hint)], nullable=nullable)


def arrow_schema(record_type: type[NamedTuple], table: str) -> pa.Schema:
    """The Arrow schema of ``record_type``: one column per field, in field order."""
    hints = typing.get_type_hints(record_type)
    fields = [_arrow_field(name, hints[name]) for name in record_type._fields]
    return pa.schema(fields, metadata={"callqa.table": table, "callqa.version": TABLE_VERSION})


class Table(NamedTuple):
    """A warehouse table: its directory under the output root and its row schema."""

    name: str
    record_type: Any  # the NamedTuple class of its rows
    schema: pa.Schema


CALLS: Final = Table("calls", CallRow, arrow_schema(CallRow, "calls"))
DEAD_LETTERS: Final = Table("dead_letters", DeadLetter, arrow_schema(DeadLetter, "dead_letters"))
TRANSCRIPTS: Final = Table("transcripts", Transcript, arrow_schema(Transcript, "transcripts"))
TABLES: Final = (CALLS, DEAD_LETTERS, TRANSCRIPTS)
