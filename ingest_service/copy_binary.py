"""PostgreSQL's binary COPY format built from columns with numpy, a block at a time.

Why: asyncpg's `copy_records_to_table` encodes a Python tuple per row (about
1 µs per reading, see docs/ingest.md). A columnar upload already holds its
readings as arrays, so each block becomes one numpy structured array in
network byte order, laid out as the COPY stream's tuples are: a 16-bit field
count, then per field a 32-bit length and the value (length -1 and no value
for NULL). Filling it is a few array assignments per block, whatever the
number of rows.

The format (PostgreSQL docs, "COPY", Binary Format): an 11-byte signature,
a 32-bit flags word and a 32-bit header extension length (both 0), the
tuples, and a 16-bit -1 as trailer. `timestamptz` is int64 microseconds since
2000-01-01 (what `ColumnBlock.time` holds), `real` float4, `double precision`
float8, `bigint` int8, `integer` int4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ingest_service.batch import ColumnBlock
from sensormesh_core.storage.schema import MEASUREMENTS_TABLE, TYPED_TABLES, SqlType

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_WIRE: dict[SqlType, str] = {SqlType.REAL: ">f4", SqlType.BIGINT: ">i8", SqlType.DOUBLE: ">f8"}
# Value types of each reading table's quantity columns, in column order.
VALUE_TYPES: dict[str, tuple[SqlType, ...]] = {
    t.table: tuple(q.sql_type for q in t.quantities) for t in TYPED_TABLES
} | {MEASUREMENTS_TABLE: (SqlType.DOUBLE,)}
_KEY_FIELDS: list[tuple[str, str]] = [
    ("count", ">i2"),
    ("time_len", ">i4"),
    ("time", ">i8"),
    ("sequence_len", ">i4"),
    ("sequence", ">i8"),
    ("key_len", ">i4"),
    ("key", ">i4"),
]
_dtypes: dict[tuple[str, tuple[bool, ...]], np.dtype[Any]] = {}


def _dtype(table: str, present: tuple[bool, ...]) -> np.dtype[Any]:
    """The tuple layout of `table` with NULL in the columns not `present` (cached)."""
    found = _dtypes.get((table, present))
    if found is None:
        fields = list(_KEY_FIELDS)
        for position, (sql_type, here) in enumerate(zip(VALUE_TYPES[table], present, strict=True)):
            fields.append((f"len{position}", ">i4"))
            if here:
                fields.append((f"value{position}", _WIRE[sql_type]))
        found = _dtypes[(table, present)] = np.dtype(fields)
    return found


def encode_block(block: ColumnBlock) -> bytes:
    """The block's rows as COPY binary tuples (no header or trailer)."""
    present = tuple(v is not None for v in block.values)
    dtype = _dtype(block.table, present)
    tuples = np.empty(len(block), dtype=dtype)
    tuples["count"] = 3 + len(present)
    tuples["time_len"] = 8
    tuples["time"] = block.time
    tuples["sequence_len"] = 8
    tuples["sequence"] = block.sequence
    tuples["key_len"] = 4
    tuples["key"] = block.key
    for position, values in enumerate(block.values):
        if values is None:
            tuples[f"len{position}"] = -1
        else:
            tuples[f"len{position}"] = dtype[f"value{position}"].itemsize
            tuples[f"value{position}"] = values
    return tuples.tobytes()


def encode(blocks: Sequence[ColumnBlock]) -> bytes:
    """A whole COPY stream (header, every block's tuples, trailer) for blocks of one table."""
    return b"".join([HEADER, *map(encode_block, blocks), TRAILER])
