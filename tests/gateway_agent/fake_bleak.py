"""The bleak seam for the WT901BLE input: a scanner and clients that deliver notification bytes.

Tests push packets through the callback the input subscribed with and drop
the link through the disconnected callback, as BlueZ would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeDevice:
    address: str
    name: str


@dataclass
class FakeClient:
    device: FakeDevice
    on_disconnect: Callable[[Any], None]
    notify: Callable[[Any, bytearray], None] | None = None
    uuid: str | None = None
    disconnected: bool = False

    async def connect(self) -> bool:
        return True

    async def disconnect(self) -> bool:
        self.disconnected = True
        return True

    async def start_notify(self, char_specifier: str, callback: Callable[[Any, bytearray], None]) -> None:
        self.uuid = char_specifier
        self.notify = callback

    def send(self, data: bytes) -> None:
        assert self.notify is not None, "not subscribed"
        self.notify(object(), bytearray(data))

    def drop_link(self) -> None:
        self.on_disconnect(self)


@dataclass
class FakeBluetooth:
    """Devices in range, the clients made and when each scan started."""

    devices: list[FakeDevice]
    in_range: bool = True
    clients: list[FakeClient] = field(default_factory=list)
    scans: list[float] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def find_device(
        self, address: str | None, name: str | None, scan_seconds: float
    ) -> FakeDevice | None:
        self.scans.append(asyncio.get_running_loop().time())
        if not self.in_range:
            return None
        return next((d for d in self.devices if d.address == address or d.name == name), None)

    def client(self, device: FakeDevice, on_disconnect: Callable[[Any], None]) -> FakeClient:
        bluetooth = self

        class Subscribing(FakeClient):
            async def start_notify(
                self, char_specifier: str, callback: Callable[[Any, bytearray], None]
            ) -> None:
                await super().start_notify(char_specifier, callback)
                bluetooth.subscribed.set()

        client = Subscribing(device, on_disconnect)
        self.clients.append(client)
        return client
