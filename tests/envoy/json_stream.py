"""Reading a server stream that Envoy's transcoder sends as one growing JSON array."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

_DECODER = json.JSONDecoder()


async def json_array_items(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each element of a streamed `[{...},{...}...]` as soon as it is complete."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while True:
            stripped = buffer.lstrip()
            if stripped[:1] in ("[", ","):
                stripped = stripped[1:].lstrip()
            if not stripped or stripped[0] == "]":
                buffer = stripped
                break
            try:
                item, end = _DECODER.raw_decode(stripped)
            except json.JSONDecodeError:
                buffer = stripped if not stripped.startswith(("[", ",")) else buffer
                break
            buffer = stripped[end:]
            yield item
