"""A camera: still frames (snapshots) at an interval and on the `capture` command.

Sources:
- picamera2: a Raspberry Pi camera module through libcamera
  (gateway_agent/inputs/camera_picamera2.py); the frame is encoded by
  picamera2 at `jpeg_quality`.
- v4l2: a USB (UVC) or other Video4Linux2 camera at `device`, through linuxpy
  (gateway_agent/inputs/camera_v4l2.py); the camera's own Motion-JPEG passes
  through (set `reencode` to apply `jpeg_quality`).
- simulated: a test card with the capture time drawn on it, made with Pillow
  (gateway_agent/inputs/camera_simulated.py), for `sensormesh up` and
  machines without a camera.
- auto (the default): picamera2 when it is installed, else v4l2.

A frame is the contract's `Frame` (camera name, capture time, content type,
size, the JPEG), numbered by the agent's frame spool on its own sequence and
uploaded beside the readings on its own stream. The libraries are imported
when the input opens, so an agent without a camera never loads them; a
missing one is reported as the input's error, naming the extra to install.

Sample config:

    [[inputs.camera]]
      ## "auto", "picamera2", "v4l2" or "simulated".
      # source = "auto"
      ## The camera's name in frames, statuses and the `capture` command; default "camera".
      # name = "camera"
      ## Time between frames.
      # interval = "10s"
      ## Frame size in pixels (a V4L2 camera may choose the nearest size it has).
      # width = 640
      # height = 480
      ## JPEG quality, 1-95 (picamera2, simulated; v4l2 only with reencode).
      # jpeg_quality = 85
      ## v4l2: the device, frames skipped after starting the stream, and whether to re-encode.
      # device = "/dev/video0"
      # warmup_frames = 3
      # reencode = false
      ## picamera2: which camera (0: the first).
      # camera_index = 0
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta
from sensormesh.v1.frame_pb2 import Frame

from gateway_agent.durations import Duration
from gateway_agent.inputs.base import InputSettings
from gateway_agent.inputs.camera_picamera2 import PiCamera, picamera2_available
from gateway_agent.inputs.camera_simulated import SimulatedCamera
from gateway_agent.inputs.camera_source import CameraSource
from gateway_agent.inputs.camera_v4l2 import V4l2Camera

Source = Literal["auto", "picamera2", "v4l2", "simulated"]


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of one camera."""

    source: Annotated[Source, Meta(description="Where frames come from.")] = "auto"
    name: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
                description='The camera\'s name in frames and statuses; default "camera".',
            ),
        ]
        | None
    ) = None
    interval: Annotated[Duration, Meta(description="Time between frames.")] = Duration(seconds=10)
    width: Annotated[int, Meta(ge=16, le=16384, description="Frame width in pixels.")] = 640
    height: Annotated[int, Meta(ge=16, le=16384, description="Frame height in pixels.")] = 480
    jpeg_quality: Annotated[int, Meta(ge=1, le=95, description="JPEG quality (1-95).")] = 85
    device: Annotated[Path, Meta(description="The V4L2 device.")] = Path("/dev/video0")
    warmup_frames: Annotated[int, Meta(ge=0, le=100, description="V4L2: frames skipped per capture.")] = 3
    reencode: Annotated[bool, Meta(description="V4L2: re-encode the camera's JPEG at jpeg_quality.")] = False
    camera_index: Annotated[int, Meta(ge=0, le=15, description="picamera2: which camera.")] = 0


def source_for(settings: Settings, name: str) -> CameraSource:
    """The source the settings name (`auto`: picamera2 if installed, else V4L2)."""
    kind = settings.source
    if kind == "auto":
        kind = "picamera2" if picamera2_available() else "v4l2"
    if kind == "simulated":
        return SimulatedCamera(name, settings.width, settings.height, settings.jpeg_quality)
    if kind == "picamera2":
        return PiCamera(settings.camera_index, settings.width, settings.height, settings.jpeg_quality)
    return V4l2Camera(
        settings.device,
        settings.width,
        settings.height,
        warmup_frames=settings.warmup_frames,
        reencode_quality=settings.jpeg_quality if settings.reencode else None,
    )


class Camera:
    """A polled input whose reads are frames; its source runs in a worker thread."""

    captures_frames = True

    def __init__(self, settings: Settings, source: CameraSource | None = None) -> None:
        self.settings = settings
        self.name = settings.name or "camera"
        self.interval = settings.interval
        self._source = source or source_for(settings, self.name)

    async def open(self) -> None:
        await asyncio.to_thread(self._source.open)

    async def read(self) -> Sequence[Frame]:
        captured = await asyncio.to_thread(self._source.capture)
        frame = Frame(
            camera=self.name,
            content_type=captured.content_type,
            width=captured.width,
            height=captured.height,
            data=captured.data,
        )
        frame.capture_time.FromNanoseconds(time.time_ns())
        return [frame]

    async def close(self) -> None:
        await asyncio.to_thread(self._source.close)


def create(settings: Settings) -> Camera:
    return Camera(settings)
