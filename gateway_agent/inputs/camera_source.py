"""What every camera source is, for the `camera` input: open, capture one JPEG, close.

Sources are blocking (a V4L2 ioctl, libcamera, Pillow's encoder): the camera
input runs them in a worker thread. A source raises what its library raises,
or InputError with what to do; the scheduler reports it and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Captured:
    """One still image: JPEG bytes and their size in pixels."""

    data: bytes
    width: int
    height: int
    content_type: str = "image/jpeg"


class CameraSource(Protocol):
    """One camera device."""

    def open(self) -> None:
        """Take the camera (set its format); called again after a failure."""

    def capture(self) -> Captured:
        """Take one still now."""

    def close(self) -> None:
        """Release the camera."""
