"""A register-map I2C device behind the `smbus2.SMBus` methods the drivers call.

This is the lowest seam of the I2C drivers: tests fill the registers with
datasheet values (trimming words, raw ADC counts) and check the driver's
converted figures and the registers it wrote.
"""

from __future__ import annotations


class FakeSMBus:
    """One bus with devices at addresses; each device is 256 byte registers."""

    def __init__(self, devices: dict[int, dict[int, int]]) -> None:
        self.registers = {address: dict(regs) for address, regs in devices.items()}
        self.writes: list[tuple[int, int, int]] = []
        self.closed = False
        self.fail_reads = False

    def _device(self, address: int) -> dict[int, int]:
        if self.fail_reads or address not in self.registers:
            raise OSError(121, "Remote I/O error")  # what the kernel answers when nobody ACKs
        return self.registers[address]

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        return self._device(i2c_addr).get(register, 0)

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self._device(i2c_addr)[register] = value
        self.writes.append((i2c_addr, register, value))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        device = self._device(i2c_addr)
        return [device.get(register + i, 0) for i in range(length)]

    def close(self) -> None:
        self.closed = True


def little_endian_words(start: int, words: list[int]) -> dict[int, int]:
    """Registers holding 16-bit words LSB first from `start` (two's complement for negatives)."""
    registers: dict[int, int] = {}
    for i, word in enumerate(words):
        value = word & 0xFFFF
        registers[start + 2 * i] = value & 0xFF
        registers[start + 2 * i + 1] = value >> 8
    return registers


def big_endian_words(start: int, words: list[int]) -> dict[int, int]:
    """Registers holding 16-bit words MSB first from `start` (the MPU-6050's data registers)."""
    registers: dict[int, int] = {}
    for i, word in enumerate(words):
        value = word & 0xFFFF
        registers[start + 2 * i] = value >> 8
        registers[start + 2 * i + 1] = value & 0xFF
    return registers
