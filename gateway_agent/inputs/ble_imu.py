"""WitMotion WT901BLE-family IMUs (WT901BLECL, BWT901BLECL5.0) over Bluetooth Low Energy, with bleak.

Wiring: none; power the sensor (USB or its battery) within radio range. On a
Raspberry Pi the agent needs BlueZ (bluetoothd) and, under systemd, access to
the system D-Bus. Find the address with `bluetoothctl scan le` (the sensor
advertises as "WT901BLE68" or similar).

How it reads: finds the sensor by address (preferred: stable) or advertised
name, connects, subscribes to the notify characteristic
0000ffe4-0000-1000-8000-00805f9a34fb (service 0000ffe5-...), and turns each
notification into IMU readings stamped with the time they arrived (the
packet carries no timestamp). The sensor's default output rate is 10 Hz;
set it (up to 200 Hz) with WitMotion's app. When the link drops the input
raises, and the scheduler reconnects with exponential backoff (1 s doubling
to 60 s by default), reporting the input as failing meanwhile.

Packet layout (WitMotion WT901BLECL / BWT901BLECL5.0 manual, "Data
protocol"; all values int16 little-endian, 20 bytes):

    offset  0     1     2..3  4..5  6..7  8..9  10..11 12..13 14..15 16..17 18..19
    field   0x55  0x61  AccX  AccY  AccZ  GyrX  GyrY   GyrZ   Roll   Pitch  Yaw

    acceleration  = raw / 32768 × 16 g     (× 9.80665 for m/s²)
    angular rate  = raw / 32768 × 2000 deg/s
    angle         = raw / 32768 × 180 deg  (parsed, not uploaded: the contract's IMU payload has no angles)

Packets with flag 0x71 answer register reads (magnetometer, quaternion,
temperature) and are skipped. A notification normally holds one packet; the
parser also accepts several back to back, skips bytes until a 0x55 0x61
header, and drops an incomplete tail.

Link health (gateway_agent/inputs/ble_link.py): every `health_interval` the
battery level, when the sensor offers the standard Battery Service, and the
RSSI of its advertisements, in `link_health` readings under the same sensor
name, read beside the notifications without pausing them.

Units: m/s² and deg/s in `imu` readings; %, dBm in `link_health` readings.

Sample config:

    [[inputs.ble_imu]]
      ## The sensor's Bluetooth address (preferred) or its advertised name; one is required.
      address = "C8:2B:96:A1:5E:0F"
      # device_name = "WT901BLE68"
      ## How long to scan for the sensor before reporting it missing.
      # scan_timeout = "10s"
      ## The notify characteristic carrying the data packets.
      # notify_uuid = "0000ffe4-0000-1000-8000-00805f9a34fb"
      ## Sensor name in readings; default "ble:wt901-<address or name>".
      # sensor = "ble:wt901-C8:2B:96:A1:5E:0F"
      ## How often to report link health: battery level (Battery Service 0x180F, if the
      ## sensor has it) and signal strength (RSSI); "0s" for never.
      # health_interval = "1m"
      ## Keep scanning while connected for a fresher RSSI (sensors that advertise while
      ## connected; costs radio time); otherwise the RSSI is that of each reconnection's scan.
      # watch_advertisements = false
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from msgspec import Meta

from gateway_agent.durations import Duration
from gateway_agent.inputs.base import Emit, InputError, InputSettings
from gateway_agent.inputs.ble_link import Sighting, WatchAdvertisements, bleak_watch, monitored
from gateway_agent.readings import imu, now_ns, sensor_name

NOTIFY_UUID = "0000ffe4-0000-1000-8000-00805f9a34fb"
HEADER = 0x55
FLAG_IMU = 0x61
FLAG_REGISTER = 0x71
PACKET_LENGTH = 20
STANDARD_GRAVITY = 9.80665
ACCEL_FULL_SCALE_G = 16.0
GYRO_FULL_SCALE_DPS = 2000.0
ANGLE_FULL_SCALE_DEG = 180.0
_NINE_INT16 = struct.Struct("<9h")


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of one WT901BLE sensor."""

    address: Annotated[str, Meta(min_length=1)] | None = None
    device_name: Annotated[str, Meta(min_length=1)] | None = None
    scan_timeout: Duration = Duration(seconds=10)
    notify_uuid: str = NOTIFY_UUID
    sensor: str | None = None
    health_interval: Annotated[
        Duration, Meta(description="How often to report battery level and signal strength; 0 for never.")
    ] = Duration(minutes=1)
    watch_advertisements: Annotated[
        bool, Meta(description="Scan while connected for a fresher RSSI (costs radio time).")
    ] = False

    def __post_init__(self) -> None:
        if (self.address is None) == (self.device_name is None):
            raise ValueError("set exactly one of address and device_name")


@dataclass(frozen=True)
class ImuPacket:
    """One decoded 0x55 0x61 packet."""

    acceleration_mps2: tuple[float, float, float]
    angular_rate_dps: tuple[float, float, float]
    angle_deg: tuple[float, float, float]


def _scaled(raw: tuple[int, ...], full_scale: float) -> tuple[float, float, float]:
    x, y, z = raw
    return x / 32768.0 * full_scale, y / 32768.0 * full_scale, z / 32768.0 * full_scale


def parse_packets(data: bytes) -> list[ImuPacket]:
    """Every complete IMU packet in one notification's bytes, in order (see the module doc)."""
    packets = []
    i = 0
    while i + PACKET_LENGTH <= len(data):
        if data[i] != HEADER or data[i + 1] != FLAG_IMU:
            if data[i] == HEADER and data[i + 1] == FLAG_REGISTER:
                i += PACKET_LENGTH  # another packet type (0x71 register reply): skip it whole
            else:
                i += 1  # not at a packet boundary: resynchronise on the next header
            continue
        raw = _NINE_INT16.unpack_from(data, i + 2)
        acc = _scaled(raw[0:3], ACCEL_FULL_SCALE_G * STANDARD_GRAVITY)
        gyro = _scaled(raw[3:6], GYRO_FULL_SCALE_DPS)
        angle = _scaled(raw[6:9], ANGLE_FULL_SCALE_DEG)
        packets.append(ImuPacket(acc, gyro, angle))
        i += PACKET_LENGTH
    return packets


class BleClient(Protocol):
    """The subset of `bleak.BleakClient` the input uses."""

    async def connect(self) -> Any: ...

    async def disconnect(self) -> Any: ...

    async def start_notify(self, char_specifier: str, callback: Callable[[Any, bytearray], None]) -> None: ...

    @property
    def services(self) -> Any: ...

    async def read_gatt_char(self, char_specifier: str) -> bytearray: ...


FindDevice = Callable[[str | None, str | None, float], Awaitable[Sighting | None]]
ClientFactory = Callable[[Any, Callable[[Any], None]], BleClient]


async def bleak_find_device(address: str | None, name: str | None, scan_seconds: float) -> Sighting | None:
    """Scan with bleak for the sensor (None if not seen within `scan_seconds`), keeping the
    RSSI of the advertisement that matched."""
    from bleak import BleakScanner

    heard: list[int] = []

    def wanted(device: Any, advertisement: Any) -> bool:
        if address is not None:
            match = str(device.address).lower() == address.lower()
        else:
            match = advertisement.local_name == name
        if match:
            heard.append(advertisement.rssi)
        return bool(match)

    device = await BleakScanner.find_device_by_filter(wanted, timeout=scan_seconds)
    return None if device is None else Sighting(device, heard[-1] if heard else None)


def bleak_client(device: Any, disconnected: Callable[[Any], None]) -> BleClient:
    from bleak import BleakClient

    client: BleClient = BleakClient(device, disconnected_callback=disconnected)
    return client


class BleImu:
    """Streams readings from one WT901BLE; raises when the link cannot be made or drops."""

    def __init__(
        self,
        settings: Settings,
        find_device: FindDevice = bleak_find_device,
        client_factory: ClientFactory = bleak_client,
        watch: WatchAdvertisements = bleak_watch,
    ) -> None:
        self.settings = settings
        identity = settings.address or settings.device_name or ""
        self.sensor = settings.sensor or sensor_name(f"ble:wt901-{identity}")
        self.name = settings.name or self.sensor
        self._find_device = find_device
        self._client_factory = client_factory
        self._watch = watch if settings.watch_advertisements else None

    async def stream(self, emit: Emit) -> None:
        s = self.settings
        wanted = s.address or s.device_name
        sighting = await self._find_device(s.address, s.device_name, s.scan_timeout.total_seconds())
        if sighting is None:
            raise InputError(f"BLE sensor {wanted} not found within {s.scan_timeout.total_seconds():g} s")
        loop = asyncio.get_running_loop()
        link_lost = asyncio.Event()

        def on_disconnect(_client: Any) -> None:
            loop.call_soon_threadsafe(link_lost.set)  # bleak may call back from another thread

        client = self._client_factory(sighting.device, on_disconnect)

        def on_notify(_sender: Any, data: bytearray) -> None:
            received = now_ns()
            packets = parse_packets(bytes(data))
            if packets:
                emit([imu(self.sensor, received, p.acceleration_mps2, p.angular_rate_dps) for p in packets])

        await client.connect()
        try:
            await client.start_notify(s.notify_uuid, on_notify)
            emit([])  # subscribed: the input is healthy even before the first packet
            async with monitored(self.sensor, client, sighting, emit, s.health_interval, self._watch):
                await link_lost.wait()
            raise InputError(f"BLE link to {wanted} dropped")
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()


def create(settings: Settings) -> BleImu:
    return BleImu(settings)
