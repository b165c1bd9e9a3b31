"""The simulated camera: a test card with the capture time drawn on it, made with Pillow.

For `sensormesh up`, demos and machines without a camera: every capture is a
real JPEG (or PNG) of the configured size, different from the last (the time
is on it), so everything downstream (the spool, the uplink, ingest's checks,
GetFrame, a live view) sees what a camera would send.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from gateway_agent.inputs.base import InputError
from gateway_agent.inputs.camera_source import Captured

PILLOW_MISSING = "the simulated camera draws with Pillow: pip install 'sensormesh[camera]'"


class SimulatedCamera:
    """Draws a `width` x `height` test card per capture."""

    def __init__(self, name: str, width: int, height: int, jpeg_quality: int) -> None:
        self._name = name
        self._width = width
        self._height = height
        self._quality = jpeg_quality
        self._card: Any = None
        self._font: Any = None

    def open(self) -> None:
        try:
            from PIL import Image, ImageDraw, ImageFont
        except ImportError as error:
            raise InputError(PILLOW_MISSING) from error
        width, height = self._width, self._height
        card = Image.new("RGB", (width, height), (24, 32, 48))
        draw = ImageDraw.Draw(card)
        bars = [
            (192, 192, 192),
            (192, 192, 0),
            (0, 192, 192),
            (0, 192, 0),
            (192, 0, 192),
            (192, 0, 0),
            (0, 0, 192),
        ]
        for index, colour in enumerate(bars):  # SMPTE-like colour bars over the top two thirds
            left = index * width // len(bars)
            draw.rectangle([left, 0, (index + 1) * width // len(bars), height * 2 // 3], fill=colour)
        self._font = ImageFont.load_default(size=max(10, height // 12))
        draw.text(
            (width // 20, height * 2 // 3 + height // 30), self._name, fill=(255, 255, 255), font=self._font
        )
        self._card = card

    def capture(self) -> Captured:
        from PIL import ImageDraw

        picture = self._card.copy()
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
        ImageDraw.Draw(picture).text(
            (self._width // 20, self._height * 5 // 6), now, fill=(255, 255, 0), font=self._font
        )
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=self._quality)
        return Captured(out.getvalue(), self._width, self._height)

    def close(self) -> None:
        self._card = None
