"""What is wrong with a frame batch or one of its frames. Pure functions of the request and settings.

Two levels, as for readings: a malformed batch (its device id, its range,
frames out of order or too many) is refused whole; a frame that breaks a rule
of its own is refused alone, named by its path in the batch
(`frames[2].data`), and the rest of the batch is committed. A frame's rules:
the contract's (`buf.validate` on Frame: camera name, content type, sizes,
1 byte to 4 MiB of image), the service's lower image limit, a capture time
within the floor, the frames' retention and the future tolerance, and bytes
that are the image the frame says (sensormesh_core/image_headers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sensormesh.v1 import frame_pb2, ingest_pb2

from ingest_service.offsets import range_violations
from ingest_service.settings import IngestSettings
from sensormesh_core import validation
from sensormesh_core.errors import FieldViolation
from sensormesh_core.image_headers import NotTheImage, image_size


@dataclass(frozen=True, slots=True)
class CaptureWindow:
    """The capture times a frame may have, for one batch prepared at one moment."""

    earliest: datetime  # the later of the time floor and now - frame_retention
    latest: datetime  # now + the future tolerance

    @classmethod
    def at(cls, now: datetime, settings: IngestSettings) -> CaptureWindow:
        earliest = max(settings.ingest_time_floor, now - settings.frame_retention)
        return cls(earliest, now + settings.ingest_future_tolerance)


def head_violations(
    request: ingest_pb2.UploadFramesRequest, settings: IngestSettings
) -> list[FieldViolation]:
    """The batch's own fields and the order of its frames: what refuses the whole batch."""
    head = ingest_pb2.UploadFramesRequest(
        device_id=request.device_id,
        first_sequence=request.first_sequence,
        last_sequence=request.last_sequence,
        thinned=request.thinned,
    )
    violations = validation.violations(head)
    limit = settings.ingest_max_batch_frames
    if len(request.frames) > limit:
        violations.append(
            FieldViolation("frames", f"at most {limit} frames per batch, got {len(request.frames)}")
        )
    if not violations:
        violations = range_violations(
            request.first_sequence,
            request.last_sequence,
            [frame.sequence for frame in request.frames],
            items="frames",
        )
    return violations


def frame_violations(
    index: int, frame: frame_pb2.Frame, window: CaptureWindow, settings: IngestSettings
) -> list[FieldViolation]:
    """Why frame `index` of a batch is refused; empty when it is stored."""
    path = f"frames[{index}]"
    found = validation.violations(frame, prefix=path)
    if found:
        return found
    size = len(frame.data)
    if size > settings.ingest_max_frame_bytes:
        limit = settings.ingest_max_frame_bytes
        return [
            FieldViolation(
                f"{path}.data", f"{size} bytes; this service takes images of at most {limit} bytes"
            )
        ]
    capture = frame.capture_time.ToDatetime(tzinfo=window.earliest.tzinfo)
    if capture < window.earliest or capture > window.latest:
        return [FieldViolation(f"{path}.capture_time", _capture_problem(capture, window, settings))]
    try:
        width, height = image_size(frame.content_type, frame.data)
    except NotTheImage as problem:
        return [FieldViolation(f"{path}.data", f"not a {frame.content_type} image: {problem}")]
    found = [
        FieldViolation(f"{path}.{name}", f"{stated}, but the image is {actual} pixels {name}")
        for name, stated, actual in (("width", frame.width, width), ("height", frame.height, height))
        if stated != actual
    ]
    return found


def _capture_problem(capture: datetime, window: CaptureWindow, settings: IngestSettings) -> str:
    shown = capture.isoformat()
    if capture > window.latest:
        return f"{shown} is more than {settings.ingest_future_tolerance} ahead of the server's clock"
    if capture < settings.ingest_time_floor:
        floor = settings.ingest_time_floor.isoformat()
        return f"{shown} is before the time floor {floor} (is the device's clock set?)"
    return f"{shown} is older than the frames' retention period ({_days(settings.frame_retention)})"


def _days(span: timedelta) -> str:
    return f"{span.days} days" if span.days and not span.seconds else str(span)
