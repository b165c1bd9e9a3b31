"""The camera input's sources at their lowest seams: the simulated camera's real JPEGs, a V4L2
camera through a fake linuxpy device (formats, warm-up frames, a broken frame), a Pi camera
through a fake picamera2, and a missing library named with the extra to install."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_agent.inputs import camera
from gateway_agent.inputs.base import InputError, PolledInput
from gateway_agent.inputs.camera_simulated import SimulatedCamera
from sensormesh_core.image_headers import JPEG, image_size
from tests.support.frames import image


async def test_the_simulated_camera_takes_a_jpeg_of_its_size_with_the_time_on_it() -> None:
    cam = camera.create(camera.Settings(source="simulated", name="door", width=320, height=240))
    assert isinstance(cam, PolledInput)
    await cam.open()
    first = (await cam.read())[0]
    await asyncio.sleep(0.01)  # the card shows milliseconds: two reads within one drew the same picture
    second = (await cam.read())[0]
    await cam.close()

    assert (first.camera, first.content_type, first.width, first.height) == ("door", "image/jpeg", 320, 240)
    assert image_size(JPEG, first.data) == (320, 240)
    assert first.capture_time.seconds > 1_700_000_000
    assert first.data != second.data  # the time drawn on it moves


# -- V4L2 through a fake linuxpy, the seam the input talks to ----------------------------------------


class FakeFormat:
    def __init__(self, width: int, height: int, pixel_format: int) -> None:
        self.width, self.height, self.pixel_format = width, height, pixel_format


class FakeV4l2:
    """linuxpy.video.device as the input uses it, over a camera that sends `frames` in turn."""

    MJPEG = 1196444237
    YUYV = 1448695129

    def __init__(self, frames: list[bytes], pixel_format: int = MJPEG) -> None:
        self.frames = frames
        self.pixel_format = pixel_format
        self.formats_asked: list[tuple[int, int, str]] = []
        self.opened = self.closed = 0
        self.streams = 0
        fake = self

        class PixelFormat(int):
            MJPEG = fake.MJPEG

            @property
            def name(self) -> str:
                return "YUYV" if self == fake.YUYV else "MJPEG"

        class Device:
            def __init__(self, path: str) -> None:
                self.path = path

            def open(self) -> None:
                fake.opened += 1

            def close(self) -> None:
                fake.closed += 1

            def set_format(self, buffer_type: int, width: int, height: int, pixel_format: str) -> None:
                fake.formats_asked.append((width, height, pixel_format))

            def get_format(self, buffer_type: int) -> FakeFormat:
                return FakeFormat(640, 480, PixelFormat(fake.pixel_format))

        class VideoCapture:
            def __init__(self, device: Device) -> None:
                pass

            def __enter__(self) -> Iterator[bytes]:
                fake.streams += 1
                return iter(fake.frames)

            def __exit__(self, *exc: object) -> None:
                pass

        self.module = types.SimpleNamespace(
            Device=Device,
            VideoCapture=VideoCapture,
            BufferType=types.SimpleNamespace(VIDEO_CAPTURE=1),
            PixelFormat=PixelFormat,
        )


@pytest.fixture
def fake_v4l2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeV4l2:
    dark, settled = image(640, 480, text="dark"), image(640, 480, text="settled")
    fake = FakeV4l2([dark, dark, dark, settled, settled])
    package = types.ModuleType("linuxpy.video")
    package.device = fake.module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "linuxpy", types.ModuleType("linuxpy"))
    monkeypatch.setitem(sys.modules, "linuxpy.video", package)
    monkeypatch.setitem(sys.modules, "linuxpy.video.device", fake.module)  # type: ignore[arg-type]
    return fake


def _v4l2(tmp_path: Path, **options: Any) -> camera.Camera:
    device = tmp_path / "video0"
    device.touch()
    return camera.create(camera.Settings(source="v4l2", device=device, **options))


async def test_a_v4l2_camera_passes_its_own_jpeg_through_after_the_warm_up(
    fake_v4l2: FakeV4l2, tmp_path: Path
) -> None:
    cam = _v4l2(tmp_path, warmup_frames=3)
    await cam.open()
    frame = (await cam.read())[0]
    await cam.close()

    assert fake_v4l2.formats_asked == [(640, 480, "MJPG")]
    assert frame.data == image(640, 480, text="settled")  # not decoded, not re-encoded
    assert (frame.width, frame.height) == (640, 480)
    assert (fake_v4l2.opened, fake_v4l2.closed, fake_v4l2.streams) == (1, 1, 1)


async def test_a_v4l2_camera_re_encodes_when_asked(fake_v4l2: FakeV4l2, tmp_path: Path) -> None:
    cam = _v4l2(tmp_path, warmup_frames=3, reencode=True, jpeg_quality=20)
    await cam.open()
    frame = (await cam.read())[0]

    assert image_size(JPEG, frame.data) == (640, 480)
    assert len(frame.data) < len(image(640, 480, text="settled"))


async def test_a_camera_without_mjpeg_is_refused_with_what_it_offers(
    fake_v4l2: FakeV4l2, tmp_path: Path
) -> None:
    fake_v4l2.pixel_format = FakeV4l2.YUYV
    with pytest.raises(InputError, match=r"offers no Motion-JPEG.*YUYV"):
        await _v4l2(tmp_path).open()
    assert fake_v4l2.closed == 1


async def test_a_broken_frame_is_an_input_error(fake_v4l2: FakeV4l2, tmp_path: Path) -> None:
    fake_v4l2.frames = [image(640, 480)[:300]]
    cam = _v4l2(tmp_path, warmup_frames=0)
    await cam.open()
    with pytest.raises(InputError, match="not a whole JPEG"):
        await cam.read()


async def test_a_missing_device_says_so(fake_v4l2: FakeV4l2, tmp_path: Path) -> None:
    cam = camera.create(camera.Settings(source="v4l2", device=tmp_path / "video9"))
    with pytest.raises(InputError, match=r"no camera at .*video9"):
        await cam.open()


# -- picamera2 and missing libraries ------------------------------------------------------------------


async def test_a_pi_camera_is_configured_once_and_captures_jpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Picamera2:
        def __init__(self, index: int) -> None:
            calls.append(f"camera {index}")
            self.options: dict[str, Any] = {}

        def create_still_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
            return {"main": main}

        def configure(self, config: dict[str, Any]) -> None:
            calls.append(f"configure {config['main']['size']}")

        def start(self) -> None:
            calls.append(f"start quality={self.options['quality']}")

        def capture_file(self, out: Any, format: str) -> None:
            out.write(image(1280, 720, text="pi"))

        def stop(self) -> None:
            calls.append("stop")

        def close(self) -> None:
            calls.append("close")

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))  # type: ignore[arg-type]
    cam = camera.create(camera.Settings(source="auto", width=1280, height=720, jpeg_quality=70))
    await cam.open()
    frames = [(await cam.read())[0] for _ in range(2)]
    await cam.close()

    assert calls == ["camera 0", "configure (1280, 720)", "start quality=70", "stop", "close"]
    assert all(f.data == image(1280, 720, text="pi") and (f.width, f.height) == (1280, 720) for f in frames)


@pytest.mark.parametrize(
    ("source", "module", "extra"),
    [("simulated", "PIL", "sensormesh\\[camera\\]"), ("v4l2", "linuxpy", "sensormesh\\[camera\\]"),
     ("picamera2", "picamera2", "python3-picamera2")],
)  # fmt: skip
async def test_a_missing_library_is_reported_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str, module: str, extra: str
) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as on an install without it
    device = tmp_path / "video0"
    device.touch()
    cam = camera.create(camera.Settings(source=source, device=device))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=extra):
        await cam.open()


def test_the_simulated_card_is_made_once() -> None:
    card = SimulatedCamera("c", 64, 48, 80)
    card.open()
    assert card.capture().width == 64
