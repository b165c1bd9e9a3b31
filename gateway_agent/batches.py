"""Building one `UploadReadingsRequest` from buffered readings, thinning reports and input statuses.

A pure function of its arguments: the uplink decides what goes into a batch,
this decides how it looks on the wire. Buffered payloads are already encoded
`Reading`s, merged into the batch without being decoded into Python objects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from sensormesh.v1.ingest_pb2 import InputStatus, ThinningReport, UploadReadingsRequest

from gateway_agent.buffer import Stored, Thinned
from sensormesh_core.columnar import to_columns


def thinning_report(thinned: Thinned) -> ThinningReport:
    report = ThinningReport(sensor=thinned.sensor, count=thinned.count)
    report.first_sample_time.FromNanoseconds(thinned.first_sample_time_ns)
    report.last_sample_time.FromNanoseconds(thinned.last_sample_time_ns)
    return report


def build_batch(
    device_id: str,
    after_sequence: int,
    rows: Sequence[Stored],
    thinned: Sequence[Thinned] = (),
    statuses: Sequence[InputStatus] = (),
    *,
    columnar: bool = False,
) -> UploadReadingsRequest:
    """The batch following `after_sequence`: it covers (after_sequence, last row] including gaps
    left by thinning. Without rows it covers only `after_sequence` itself (already committed), which
    carries statuses and reports without moving the mark; `after_sequence` must then be at least 1.

    With `columnar` the readings go in `columns` (sensormesh_core.columnar), unless one of them has
    no payload this agent's contracts know, which only rows can carry: then the batch stays rows.
    """
    if rows:
        first, last = after_sequence + 1, rows[-1].sequence
    else:
        first = last = after_sequence
    request = UploadReadingsRequest(device_id=device_id, first_sequence=first, last_sequence=last)
    readings = request.readings
    for row in rows:
        readings.add(sequence=row.sequence).reading.MergeFromString(row.payload)
    if columnar and rows:
        with contextlib.suppress(ValueError):  # a reading without a known payload: send rows
            request.columns.extend(to_columns(readings))
            del readings[:]
    request.thinned.extend(thinning_report(t) for t in thinned)
    request.input_statuses.extend(statuses)
    return request
