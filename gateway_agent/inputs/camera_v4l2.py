"""USB and other V4L2 cameras, through linuxpy (Video4Linux2 ioctls in pure Python).

Why linuxpy: measured on the agent's budget (docs/frames.md, `python -m
sensormesh_bench.studies.camera_libraries`), it adds the least memory of the
well-kept choices (+3.8 MiB resident, against +16.7 MiB for PyAV and +25.6
MiB for OpenCV) and passes the camera's own JPEG through untouched (MJPEG
format: a copy of the mapped buffer, under a microsecond), where OpenCV's
capture decodes every frame and the agent would encode it again (1.1 ms of
a desktop core per 640x480 frame, several times that on a Pi).

The camera is asked for Motion-JPEG (`MJPG`, V4L2_PIX_FMT_MJPEG) at the
configured size; the driver may pick the nearest size it has, and the frame
says what it got. Cameras without MJPEG (raw YUYV only) are refused with a
message: encoding raw frames on a Pi costs more than the camera's own encoder.
Each capture starts the stream, lets `warmup_frames` pass (auto exposure
settles; the first frames of a started stream are often dark) and keeps the
next; between captures the camera is idle.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from gateway_agent.inputs.base import InputError
from gateway_agent.inputs.camera_source import Captured
from sensormesh_core.image_headers import JPEG, NotTheImage, image_size

LINUXPY_MISSING = "V4L2 cameras need linuxpy: pip install 'sensormesh[camera]'"
MJPEG = "MJPG"


def _linuxpy() -> Any:
    try:
        from linuxpy.video import device
    except ImportError as error:
        raise InputError(LINUXPY_MISSING) from error
    return device


class V4l2Camera:
    """One V4L2 camera at `path`, streaming MJPEG."""

    def __init__(
        self, path: Path, width: int, height: int, *, warmup_frames: int, reencode_quality: int | None
    ) -> None:
        self._path = path
        self._size = (width, height)
        self._warmup = warmup_frames
        self._reencode = reencode_quality
        self._device: Any = None

    def open(self) -> None:
        v4l2 = _linuxpy()
        if not self._path.exists():
            raise InputError(f"no camera at {self._path} (is it plugged in? `ls /dev/video*`)")
        device = v4l2.Device(str(self._path))
        device.open()
        try:
            device.set_format(v4l2.BufferType.VIDEO_CAPTURE, *self._size, MJPEG)
            chosen = device.get_format(v4l2.BufferType.VIDEO_CAPTURE)
            if chosen.pixel_format != v4l2.PixelFormat.MJPEG:
                raise InputError(
                    f"{self._path} offers no Motion-JPEG (it chose {chosen.pixel_format.name}); "
                    "the camera input takes MJPEG cameras"
                )
        except BaseException:
            device.close()
            raise
        self._device = device

    def capture(self) -> Captured:
        v4l2 = _linuxpy()
        data = b""
        with v4l2.VideoCapture(self._device) as stream:
            for index, frame in enumerate(stream):
                if index >= self._warmup:
                    data = bytes(frame)
                    break
        try:
            width, height = image_size(JPEG, data)
        except NotTheImage as problem:
            raise InputError(f"{self._path} sent a frame that is not a whole JPEG: {problem}") from None
        if self._reencode is not None:
            data = _reencode(data, self._reencode)
        return Captured(data, width, height)

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None


def _reencode(data: bytes, quality: int) -> bytes:
    """The camera's JPEG at `quality` (Pillow): smaller frames for a slow link, at a decode and an
    encode per frame (about 3 ms for 640x480 on a desktop core; several times that on a Pi)."""
    try:
        from PIL import Image
    except ImportError as error:
        raise InputError("reencode needs Pillow: pip install 'sensormesh[camera]'") from error
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, "JPEG", quality=quality)
    return out.getvalue()
