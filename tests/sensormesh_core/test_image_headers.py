"""The image structure check: real JPEGs and PNGs pass with their size; truncated ones, other
formats and arbitrary bytes are refused with a reason, never with another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensormesh_core.image_headers import JPEG, PNG, NotTheImage, image_size
from tests.support.frames import image

SAMPLE_JPEG = image(320, 240, text="jpeg")
SAMPLE_PNG = image(33, 17, text="png", fmt="PNG")


def test_real_images_give_their_size() -> None:
    assert image_size(JPEG, SAMPLE_JPEG) == (320, 240)
    assert image_size(PNG, SAMPLE_PNG) == (33, 17)
    assert image_size(JPEG, SAMPLE_JPEG + b"\x00" * 100) == (320, 240)  # padding after EOI


@pytest.mark.parametrize(
    ("content_type", "data", "reason"),
    [
        (JPEG, SAMPLE_PNG, "start-of-image"),
        (PNG, SAMPLE_JPEG, "PNG signature"),
        (JPEG, SAMPLE_JPEG[: len(SAMPLE_JPEG) // 2], "truncated"),
        (PNG, SAMPLE_PNG[:-5], "truncated"),
        (PNG, SAMPLE_PNG[:19] + bytes([SAMPLE_PNG[19] ^ 1]) + SAMPLE_PNG[20:], "CRC"),
        ("image/gif", b"GIF89a", "not one of"),
    ],
)
def test_what_is_not_the_claimed_image_is_refused_with_a_reason(
    content_type: str, data: bytes, reason: str
) -> None:
    with pytest.raises(NotTheImage, match=reason):
        image_size(content_type, data)


@given(cut=st.integers(min_value=1, max_value=len(SAMPLE_JPEG) - 2))
def test_every_truncated_jpeg_is_refused(cut: int) -> None:
    with pytest.raises(NotTheImage):
        image_size(JPEG, SAMPLE_JPEG[:cut])


@given(data=st.binary(max_size=300), content_type=st.sampled_from([JPEG, PNG]))
def test_arbitrary_bytes_are_refused_or_read_never_crash(data: bytes, content_type: str) -> None:
    try:
        width, height = image_size(content_type, data)
    except NotTheImage:
        return
    assert width >= 0 and height >= 0
