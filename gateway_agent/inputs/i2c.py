"""The I2C seam shared by the SMBus drivers: what they need of `smbus2.SMBus`.

Drivers take a `bus_factory(bus_number) -> I2CBus`; production passes
`smbus2.SMBus`, tests pass an object that serves a register map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class I2CBus(Protocol):
    """The subset of `smbus2.SMBus` the drivers use."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def close(self) -> None: ...


BusFactory = Callable[[int], I2CBus]


def smbus_factory(bus: int) -> I2CBus:
    """Open /dev/i2c-<bus> with smbus2 (imported here: only I2C inputs need it)."""
    from smbus2 import SMBus

    bus_object: I2CBus = SMBus(bus)
    return bus_object


def signed16(high: int, low: int) -> int:
    """A big-endian two's-complement 16-bit value from its two register bytes."""
    value = (high << 8) | low
    return value - 0x10000 if value & 0x8000 else value
