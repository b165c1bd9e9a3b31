"""Raspberry Pi camera modules, through picamera2 (libcamera's Python interface).

The camera is configured once for stills of the configured size and kept
running between captures, so each capture is a frame from a settled sensor
(auto exposure and white balance converged) rather than a cold start;
`capture_file` encodes it as JPEG at `jpeg_quality` (picamera2's own
encoder). Raspberry Pi OS ships picamera2 as a system package (`apt install
python3-picamera2`): the agent's virtual environment needs
`--system-site-packages` to see it, or the `pi-camera` extra.
"""

from __future__ import annotations

import io
from typing import Any

from gateway_agent.inputs.base import InputError
from gateway_agent.inputs.camera_source import Captured

PICAMERA2_MISSING = (
    "Raspberry Pi cameras need picamera2: `sudo apt install python3-picamera2` and a virtual "
    "environment made with --system-site-packages (or pip install 'sensormesh[pi-camera]')"
)


def picamera2_available() -> bool:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        return False
    return True


class PiCamera:
    """Camera `index` of a Raspberry Pi (0: the first CSI camera)."""

    def __init__(self, index: int, width: int, height: int, jpeg_quality: int) -> None:
        self._index = index
        self._size = (width, height)
        self._quality = jpeg_quality
        self._camera: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as error:
            raise InputError(PICAMERA2_MISSING) from error
        camera = Picamera2(self._index)
        try:
            camera.configure(camera.create_still_configuration(main={"size": self._size}))
            camera.options["quality"] = self._quality
            camera.start()
        except BaseException:
            camera.close()
            raise
        self._camera = camera

    def capture(self) -> Captured:
        out = io.BytesIO()
        self._camera.capture_file(out, format="jpeg")
        width, height = self._size
        return Captured(out.getvalue(), width, height)

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
            finally:
                self._camera.close()
                self._camera = None
