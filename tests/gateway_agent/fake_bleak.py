"""The bleak seam for the WT901BLE input: a scanner and clients that deliver notification bytes,
a GATT database that may hold the Battery Service, and advertisements with their RSSI.

Tests push packets through the callback the input subscribed with and drop
the link through the disconnected callback, as BlueZ would; they set the Battery Level's
bytes (or make its read hang or fail) and advertise RSSI values to a running watch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway_agent.inputs.ble_link import BATTERY_LEVEL_UUID, Sighting


@dataclass
class FakeDevice:
    address: str
    name: str
    rssi: int | None = -64  # of its advertisements
    battery: bytes | None = None  # the Battery Level characteristic's value; None: no Battery Service


@dataclass
class FakeServices:
    """bleak's BleakGATTServiceCollection, as far as get_characteristic goes."""

    uuids: set[str]

    def get_characteristic(self, specifier: str) -> object | None:
        return object() if specifier in self.uuids else None


@dataclass
class FakeClient:
    device: FakeDevice
    on_disconnect: Callable[[Any], None]
    notify: Callable[[Any, bytearray], None] | None = None
    uuid: str | None = None
    disconnected: bool = False
    reads: list[str] = field(default_factory=list)
    read_gate: asyncio.Event | None = None  # set: reads wait for it (a slow peripheral)
    read_error: Exception | None = None

    @property
    def services(self) -> FakeServices:
        return FakeServices({BATTERY_LEVEL_UUID} if self.device.battery is not None else set())

    async def read_gatt_char(self, char_specifier: str) -> bytearray:
        self.reads.append(char_specifier)
        if self.read_gate is not None:
            await self.read_gate.wait()
        if self.read_error is not None:
            raise self.read_error
        assert char_specifier == BATTERY_LEVEL_UUID and self.device.battery is not None
        return bytearray(self.device.battery)

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
    watchers: dict[str, Callable[[int], None]] = field(default_factory=dict)  # address -> callback
    read_gate: asyncio.Event | None = None  # handed to each new client
    read_error: Exception | None = None

    async def find_device(
        self, address: str | None, name: str | None, scan_seconds: float
    ) -> Sighting | None:
        self.scans.append(asyncio.get_running_loop().time())
        if not self.in_range:
            return None
        found = next((d for d in self.devices if d.address == address or d.name == name), None)
        return None if found is None else Sighting(found, found.rssi)

    @contextlib.asynccontextmanager
    async def watch(self, device: FakeDevice, heard: Callable[[int], None]) -> AsyncIterator[None]:
        self.watchers[device.address] = heard
        try:
            yield
        finally:
            del self.watchers[device.address]

    def advertise(self, address: str, rssi: int) -> None:
        """An advertisement of `address` heard by a running watch."""
        self.watchers[address](rssi)

    def client(self, device: FakeDevice, on_disconnect: Callable[[Any], None]) -> FakeClient:
        bluetooth = self

        class Subscribing(FakeClient):
            async def start_notify(
                self, char_specifier: str, callback: Callable[[Any, bytearray], None]
            ) -> None:
                await super().start_notify(char_specifier, callback)
                bluetooth.subscribed.set()

        client = Subscribing(device, on_disconnect, read_gate=self.read_gate, read_error=self.read_error)
        self.clients.append(client)
        return client
