"""A frame batch on its way to storage: checked (`prepare`), cut at the device's frame mark
(`trim`), then written by `frame_writer`.

The exactly-once rule is the readings' (ingest_service/offsets.py), on the
frames' own numbers: every frame numbered at or below the device's frame
mark was committed before and is acknowledged as a duplicate; the rest is
written and the mark moves to the batch's last sequence, refused frames and
numbers thinned on the device included, so a device never resends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sensormesh.v1 import ingest_pb2

from ingest_service.frame_checks import CaptureWindow, frame_violations, head_violations
from ingest_service.settings import IngestSettings
from sensormesh_core.errors import FieldViolation, InvalidArgument
from sensormesh_core.storage.frames import FrameRow


@dataclass(frozen=True, slots=True)
class AcceptedFrame:
    """A frame that passed its checks: its metadata row and its image."""

    row: FrameRow
    data: bytes


@dataclass(frozen=True, slots=True)
class RefusedFrame:
    """A frame refused alone, with the violations that name its fields."""

    sequence: int
    violations: list[FieldViolation]


@dataclass(frozen=True, slots=True)
class FrameThinningRow:
    """Frames of one camera the device discarded (a FrameThinningReport)."""

    camera: str
    count: int
    first_time: datetime
    last_time: datetime


@dataclass(slots=True)
class PreparedFrames:
    """A checked batch: accepted frames in sequence order, refused ones, thinning reports."""

    device_id: str
    first_sequence: int
    last_sequence: int
    frames: list[AcceptedFrame] = field(default_factory=list)
    refused: list[RefusedFrame] = field(default_factory=list)
    thinned: list[FrameThinningRow] = field(default_factory=list)

    def days(self) -> list[date]:
        """The UTC capture days of the accepted frames (the partitions they need)."""
        return sorted({f.row.time.astimezone(UTC).date() for f in self.frames})


@dataclass(frozen=True, slots=True)
class TrimmedFrames:
    """The part of a batch above the device's frame mark."""

    frames: list[AcceptedFrame]
    refused: list[RefusedFrame]
    duplicates: int  # frames at or below the mark, accepted or refused
    mark: int  # the mark after commit


def prepare(
    request: ingest_pb2.UploadFramesRequest, settings: IngestSettings, now: datetime
) -> PreparedFrames:
    """Check a batch and split it into accepted and refused frames; raises InvalidArgument
    (nothing of the batch stored) when the batch itself is malformed."""
    violations = head_violations(request, settings)
    if violations:
        shown = ", ".join(v.field or "(batch)" for v in violations[:5])
        raise InvalidArgument(f"invalid frame batch: {shown}", violations)
    window = CaptureWindow.at(now, settings)
    batch = PreparedFrames(request.device_id, request.first_sequence, request.last_sequence)
    for index, frame in enumerate(request.frames):
        found = frame_violations(index, frame, window, settings)
        if found:
            batch.refused.append(RefusedFrame(frame.sequence, found))
            continue
        data = frame.data
        row = FrameRow(
            time=frame.capture_time.ToDatetime(tzinfo=UTC),
            sequence=frame.sequence,
            device_id=request.device_id,
            camera=frame.camera,
            content_type=frame.content_type,
            width=frame.width,
            height=frame.height,
            size_bytes=len(data),
        )
        batch.frames.append(AcceptedFrame(row, data))
    batch.thinned = [
        FrameThinningRow(
            t.camera,
            t.count,
            t.first_capture_time.ToDatetime(tzinfo=UTC),
            t.last_capture_time.ToDatetime(tzinfo=UTC),
        )
        for t in request.thinned
    ]
    return batch


def trim(batch: PreparedFrames, mark: int) -> TrimmedFrames:
    """Keep what lies above `mark`; count the rest as duplicates."""
    frames = [f for f in batch.frames if f.row.sequence > mark]
    refused = [r for r in batch.refused if r.sequence > mark]
    duplicates = len(batch.frames) - len(frames) + len(batch.refused) - len(refused)
    return TrimmedFrames(frames, refused, duplicates, max(mark, batch.last_sequence))
