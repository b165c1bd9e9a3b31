"""Link health of a connected BLE sensor, beside its data: the battery level from the
standard Battery Service and the signal strength of its advertisements, as link-health
readings under the sensor's own name. Not an input of its own: BLE inputs run it for the
life of each connection (`monitored`).

Battery: Battery Service 0x180F, Battery Level characteristic 0x2A19 (Bluetooth SIG,
Battery Service 1.0, §3.1): one uint8, the charge in percent, 0 to 100 (101-255 are
reserved: such a value is left out with a warning). Read only when the sensor's GATT
database has the characteristic, every `health_interval` (1 minute by default; a battery
does not change faster, and each read costs the sensor radio time), in a task of its own:
ATT notifications need no response and flow while a read request is outstanding (Core
spec v5.4, Vol 3, Part F, §3.3), so the data keeps streaming, and a read that fails or
takes longer than 10 s is logged and tried again at the next interval; it never takes the
data link down.

Signal strength: bleak offers the RSSI of advertisements, not of an open connection on
BlueZ (that is HCI Read RSSI, which needs a raw HCI socket). So the RSSI reported is that
of the advertisement that found the sensor, at every (re)connection (a sensor that keeps
dropping out reports one each time it comes back), and, with `watch_advertisements`, the
newest one heard while connected by a scan kept running for the connection: worth it for
sensors that keep advertising while connected (many stop), at the cost of radio time that
the connection shares (and, on a Raspberry Pi's combined chip, Wi-Fi). Each report carries
the newest RSSI heard since the previous report, so none is older than one interval.
bleak gives -127 when the adapter reported no RSSI: such values, and any outside the
contract's -150 to 30 dBm, are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from gateway_agent.inputs.base import Emit
from gateway_agent.readings import link_health, now_ns

log = logging.getLogger(__name__)

BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
RSSI_NOT_AVAILABLE = -127  # what bleak reports when the adapter gave no RSSI
RSSI_RANGE = (-150, 30)  # the contract's LinkHealthPayload.signal_strength_dbm
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sighting:
    """A sensor found by a scan, and the RSSI of the advertisement that found it."""

    device: Any  # bleak's BLEDevice
    rssi: int | None


class GattClient(Protocol):
    """The subset of `bleak.BleakClient` that link health uses."""

    @property
    def services(self) -> Any: ...

    async def read_gatt_char(self, char_specifier: str) -> bytearray: ...


# Keeps calling back with the RSSI of each advertisement of `device` while entered.
WatchAdvertisements = Callable[[Any, Callable[[int], None]], AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def bleak_watch(device: Any, heard: Callable[[int], None]) -> AsyncIterator[None]:
    """A bleak scan for the life of a connection, reporting the RSSI of `device`'s advertisements."""
    from bleak import BleakScanner

    address = str(device.address).lower()

    def detected(found: Any, advertisement: Any) -> None:
        if str(found.address).lower() == address:
            heard(advertisement.rssi)

    async with BleakScanner(detection_callback=detected):
        yield


def battery_level(data: bytes) -> int | None:
    """The Battery Level characteristic's value in percent, or None if it is not 0-100."""
    if len(data) < 1 or data[0] > 100:
        return None
    return data[0]


def usable_rssi(rssi: int | None) -> int | None:
    """`rssi` if it is a measured value within the contract's range."""
    if rssi is None or rssi == RSSI_NOT_AVAILABLE or not RSSI_RANGE[0] <= rssi <= RSSI_RANGE[1]:
        return None
    return rssi


class LinkHealth:
    """Reports one connected sensor's battery and signal strength every interval."""

    def __init__(self, sensor: str, client: GattClient, emit: Emit, interval: timedelta) -> None:
        self.sensor = sensor
        self._client = client
        self._emit = emit
        self._interval = interval.total_seconds()
        self._rssi: int | None = None  # newest heard since the last report
        self._has_battery: bool | None = None  # learnt from the GATT database at the first report

    def heard(self, rssi: int | None) -> None:
        """An advertisement's RSSI (from the scan that found the sensor, or a watch)."""
        usable = usable_rssi(rssi)
        if usable is not None:
            self._rssi = usable

    async def run(self) -> None:
        """Report now, then every interval, until cancelled."""
        while True:
            try:
                await self.report()
            except Exception as error:  # never the data link's problem; try again next time
                log.warning("event=ble_link_health_failed sensor=%s error=%r", self.sensor, error)
            await asyncio.sleep(self._interval)

    async def report(self) -> None:
        """One link-health reading with what is known now; nothing if nothing is."""
        battery = await self._battery()
        rssi, self._rssi = self._rssi, None
        if battery is None and rssi is None:
            return
        self._emit(
            [
                link_health(
                    self.sensor,
                    now_ns(),
                    battery_level_percent=None if battery is None else float(battery),
                    signal_strength_dbm=None if rssi is None else float(rssi),
                )
            ]
        )

    async def _battery(self) -> int | None:
        if self._has_battery is None:
            self._has_battery = self._client.services.get_characteristic(BATTERY_LEVEL_UUID) is not None
            log.info("event=ble_battery_service sensor=%s present=%s", self.sensor, self._has_battery)
        if not self._has_battery:
            return None
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                data = bytes(await self._client.read_gatt_char(BATTERY_LEVEL_UUID))
        except Exception as error:  # the data link decides the input's health, not this read
            log.warning("event=ble_battery_read_failed sensor=%s error=%r", self.sensor, error)
            return None
        level = battery_level(data)
        if level is None:
            log.warning("event=ble_battery_level_invalid sensor=%s bytes=%s", self.sensor, data.hex())
        return level


@contextlib.asynccontextmanager
async def monitored(
    sensor: str,
    client: GattClient,
    sighting: Sighting,
    emit: Emit,
    interval: timedelta,
    watch: WatchAdvertisements | None = None,
) -> AsyncIterator[LinkHealth | None]:
    """Link health of a connected sensor while entered (interval 0: none). A watch that cannot
    start is logged, and the connection goes on with the RSSI of its discovery only."""
    if interval <= timedelta(0):
        yield None
        return
    link = LinkHealth(sensor, client, emit, interval)
    link.heard(sighting.rssi)
    async with contextlib.AsyncExitStack() as stack:
        if watch is not None:
            try:
                await stack.enter_async_context(watch(sighting.device, link.heard))
            except Exception as error:
                log.warning("event=ble_watch_failed sensor=%s error=%r", sensor, error)
        task = asyncio.create_task(link.run(), name=f"link-health {sensor}")
        try:
            yield link
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
