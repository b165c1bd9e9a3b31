"""Measure what a reading costs the ingest service's CPU before the database, as rows and as
columns: parsing the request, decoding and checking it, and encoding its COPY rows.

The benchmark's mix (`sensormesh_bench/workload.py`, 1,000-reading batches) as rows
(`readings`) and as the same batches in columns (`columns`, converted by
`sensormesh_core.columnar`); microseconds per reading, best of several passes. Rows:
protobuf parse, `decode_fast`, asyncpg's COPY encoder (timed into a connection-less
buffer is not possible, so it is not here: see docs/ingest.md). Columns: parse,
`checks.column_arrays` (packed fields to numpy, whole-batch rules), `columns.decode_entries`
(ids, ranges, time window), `copy_binary.encode`; and protovalidate over the same entries,
for comparison with enforcing the rules on arrays. Also bytes on the wire per sample.
Figures are in docs/ingest.md.

    .venv/bin/python -m sensormesh_bench.studies.columnar_decode [--seconds-of-data 60]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import protovalidate
from sensormesh.v1 import ingest_pb2

from ingest_service.batch import ColumnBlock
from ingest_service.catalog import DeviceCatalog
from ingest_service.checks import column_arrays
from ingest_service.columns import ColumnsDecoded, decode_entries
from ingest_service.copy_binary import encode
from ingest_service.decode import Decoded, Window, decode_fast
from ingest_service.rules import load_rules
from sensormesh_bench import workload
from sensormesh_core.columnar import columnar_request


def best(run: Callable[[], object], readings: int, passes: int = 7) -> float:
    fastest = float("inf")
    for _ in range(passes):
        began = time.perf_counter()
        run()
        fastest = min(fastest, time.perf_counter() - began)
    return fastest / readings * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds-of-data", type=int, default=60)
    args = parser.parse_args()
    fleet = workload.fleet(args.seconds_of_data, time.time() - 600, 1000)
    row_wire = [b.SerializeToString() for b in fleet.batches]
    column_wire = [columnar_request(b).SerializeToString() for b in fleet.batches]
    rows = [ingest_pb2.UploadReadingsRequest.FromString(b) for b in row_wire]
    columns = [ingest_pb2.UploadReadingsRequest.FromString(b) for b in column_wire]
    readings = fleet.rows
    rules = load_rules()
    device = DeviceCatalog(incarnation=1)
    for kind, sensor in (("imu", "mpu6050-0x68"), ("environment", "bme280-0x76"), ("system", "system")):
        device.typed[kind][sensor] = 1
    device.measurements.update({("soil-probe", "soil_moisture"): 2, ("current-clamp", "current"): 3})
    window = Window(-(2**62), 2**62)

    def decode_rows() -> None:
        for batch in rows:
            decode_fast(
                enumerate(batch.readings),
                batch.first_sequence - 1,
                batch.last_sequence,
                device,
                rules,
                window,
                Decoded(),
            )

    def arrays() -> list[object]:
        return [column_arrays(b.columns, b.first_sequence, b.last_sequence) for b in columns]

    entries = [column_arrays(b.columns, b.first_sequence, b.last_sequence)[0] for b in columns]

    def decode_columns() -> list[ColumnsDecoded]:
        found = []
        for batch, batch_entries in zip(columns, entries, strict=True):
            decoded = ColumnsDecoded(Decoded(), [], [])
            decode_entries(batch_entries, batch.columns, device, rules, window, decoded)
            found.append(decoded)
        return found

    decoded = decode_columns()
    assert not any(d.flagged or d.pending for d in decoded)

    def encode_columns() -> None:
        for d in decoded:
            by_table: dict[str, list[ColumnBlock]] = {}
            for block in d.out.blocks:
                by_table.setdefault(block.table, []).append(block)
            for blocks in by_table.values():
                encode(blocks)

    validator = protovalidate.Validator()

    def validate_columns() -> None:
        for batch in columns:
            for entry in batch.columns:
                validator.collect_violations(entry)

    figures = {
        "rows: parse": best(
            lambda: [ingest_pb2.UploadReadingsRequest.FromString(b) for b in row_wire], readings
        ),
        "rows: decode_fast (fields and rules)": best(decode_rows, readings),
        "columns: parse": best(
            lambda: [ingest_pb2.UploadReadingsRequest.FromString(b) for b in column_wire], readings
        ),
        "columns: column_arrays (to numpy, batch rules)": best(arrays, readings),
        "columns: decode_entries (ids, ranges, window)": best(decode_columns, readings),
        "columns: copy_binary.encode": best(encode_columns, readings),
        "columns: protovalidate on the entries (not used)": best(validate_columns, readings, 3),
    }
    for name, value in figures.items():
        print(f"{name:52} {value:6.3f} µs/reading")
    print(f"bytes on the wire per sample: rows {sum(map(len, row_wire)) / fleet.samples:.2f}, "
          f"columns {sum(map(len, column_wire)) / fleet.samples:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
