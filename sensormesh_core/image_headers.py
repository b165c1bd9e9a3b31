"""Whether bytes are the image their content type claims, and its size: JPEG and PNG.

Ingest refuses a frame whose bytes are not what its `content_type`, `width`
and `height` say, without decoding pixels: the structure is read instead,
which is what tells an image from anything else at a few microseconds a
frame, and without an imaging library on the server.

- JPEG (ITU-T T.81, Annex B): the stream starts with SOI (FF D8); marker
  segments follow, each FF xx with a big-endian length that counts itself,
  until a start-of-frame (SOF0-SOF15 but DHT C4, JPG C8 and DAC CC), whose
  payload holds precision, height and width (B.2.2); a scan (SOS, FF DA)
  must follow, and the stream ends with EOI (FF D9). Cameras may pad after
  EOI, so it is looked for in the last `_JPEG_TAIL` bytes.
- PNG (ISO/IEC 15948, 5.2-5.3, 11.2.2): the 8-byte signature, then IHDR as
  the first chunk, 13 bytes of data with width and height first and a
  CRC-32 over type and data; the file ends with the IEND chunk.

A truncated upload, an HTML error page, a PNG sent as JPEG, or dimensions
that do not match are all refused; a corrupt scan inside an otherwise
well-formed JPEG is not (only decoding finds that).
"""

from __future__ import annotations

import struct
import zlib

JPEG = "image/jpeg"
PNG = "image/png"
CONTENT_TYPES = (JPEG, PNG)

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_JPEG_TAIL = 1024
# Markers without a length (B.1.1.3): TEM, RST0-7; SOI and EOI are handled apart.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class NotTheImage(ValueError):
    """The bytes are not a well-formed image of the claimed type; the message says why."""


def image_size(content_type: str, data: bytes) -> tuple[int, int]:
    """(width, height) of `data` read as `content_type`; raises NotTheImage."""
    if content_type == JPEG:
        return _jpeg_size(data)
    if content_type == PNG:
        return _png_size(data)
    raise NotTheImage(f"{content_type!r} is not one of {', '.join(CONTENT_TYPES)}")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    if not data.startswith(_SOI):
        raise NotTheImage("does not start with a JPEG start-of-image marker (FF D8)")
    size: tuple[int, int] | None = None
    at = 2
    while True:
        if at + 4 > len(data) or data[at] != 0xFF:
            raise NotTheImage(f"no JPEG marker at byte {at}: truncated or not a JPEG")
        marker = data[at + 1]
        if marker == 0xFF:  # fill bytes before a marker (B.1.1.2)
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if length < 2 or at + 2 + length > len(data):
            raise NotTheImage(f"JPEG segment at byte {at} runs past the end: truncated")
        if marker in _SOF:
            if length < 8:
                raise NotTheImage("JPEG start-of-frame segment too short")
            height, width = struct.unpack_from(">HH", data, at + 5)
            size = (width, height)
        elif marker == _SOS:
            break
        at += 2 + length
    if size is None:
        raise NotTheImage("JPEG without a start-of-frame segment before its scan")
    if data.rfind(_EOI, max(at, len(data) - _JPEG_TAIL)) < 0:
        raise NotTheImage("JPEG without its end-of-image marker (FF D9): truncated")
    if size[0] == 0 or size[1] == 0:
        raise NotTheImage("JPEG with a zero width or height (DNL-defined height is not supported)")
    return size


def _png_size(data: bytes) -> tuple[int, int]:
    if not data.startswith(_PNG_SIGNATURE):
        raise NotTheImage("does not start with the PNG signature")
    if len(data) < 33 or data[12:16] != b"IHDR" or struct.unpack_from(">I", data, 8)[0] != 13:
        raise NotTheImage("PNG whose first chunk is not a 13-byte IHDR: truncated or malformed")
    (crc,) = struct.unpack_from(">I", data, 29)
    if zlib.crc32(data[12:29]) != crc:
        raise NotTheImage("PNG header chunk (IHDR) fails its CRC")
    if not data.endswith(_IEND):
        raise NotTheImage("PNG without its IEND chunk at the end: truncated")
    width, height = struct.unpack_from(">II", data, 16)
    return width, height
