"""Building one `UploadReadingsRequest` from buffered readings, thinning reports and input statuses.

A pure function of its arguments: the uplink decides what goes into a batch,
this decides how it looks on the wire. Buffered payloads are already encoded
`Reading`s, merged into the batch without being decoded into Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence

from sensormesh.v1.ingest_pb2 import InputStatus, ThinningReport, UploadReadingsRequest

from gateway_agent.buffer import Stored, Thinned


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
) -> UploadReadingsRequest:
    """The batch following `after_sequence`: it covers (after_sequence, last row] including gaps
    left by thinning. Without rows it covers only `after_sequence` itself (already committed), which
    carries statuses and reports without moving the mark; `after_sequence` must then be at least 1.
    """
    if rows:
        first, last = after_sequence + 1, rows[-1].sequence
    else:
        first = last = after_sequence
    request = UploadReadingsRequest(device_id=device_id, first_sequence=first, last_sequence=last)
    readings = request.readings
    for row in rows:
        readings.add(sequence=row.sequence).reading.MergeFromString(row.payload)
    request.thinned.extend(thinning_report(t) for t in thinned)
    request.input_statuses.extend(statuses)
    return request
