"""The gateway's CPU (SoC) temperature, from sysfs or the Raspberry Pi firmware.

Sources:
- sysfs: `/sys/class/thermal/thermal_zone0/temp` holds millidegrees Celsius
  (Linux thermal sysfs ABI, Documentation/ABI/testing/sysfs-class-thermal).
  On a Raspberry Pi zone 0 is the SoC ("cpu-thermal"). Reading it costs a
  file read, so it is the default.
- vcgencmd: `vcgencmd measure_temp` asks the VideoCore firmware and prints
  `temp=48.3'C`. Used when no thermal zone is readable (older kernels,
  containers without /sys/class/thermal) and the command is on PATH.

Units: °C, in a `system` reading's cpu_temperature_celsius.

Sample config:

    [[inputs.cpu_temp]]
      ## "auto" (sysfs when readable, else vcgencmd), "sysfs" or "vcgencmd".
      # source = "auto"
      ## The thermal zone file, in millidegrees Celsius.
      # zone = "/sys/class/thermal/thermal_zone0/temp"
      ## Sensor name in readings.
      # sensor = "cpu"
      ## Time between reads.
      # interval = "10s"
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from gateway_agent.durations import Duration
from gateway_agent.inputs.base import InputError, InputSettings
from gateway_agent.readings import Reading, now_ns, system

_VCGENCMD_OUTPUT = re.compile(r"temp=(-?\d+(?:\.\d+)?)'C")
VCGENCMD_TIMEOUT_S = 5.0


class Settings(InputSettings, kw_only=True, frozen=True):
    """Options of the CPU temperature input."""

    source: Literal["auto", "sysfs", "vcgencmd"] = "auto"
    zone: Path = Path("/sys/class/thermal/thermal_zone0/temp")
    sensor: str = "cpu"
    interval: Duration = Duration(seconds=10)


def parse_millidegrees(text: str) -> float:
    """The thermal zone's content (e.g. "48312\\n") in °C."""
    try:
        return int(text.strip()) / 1000.0
    except ValueError as error:
        raise InputError(f"thermal zone holds {text.strip()!r}, not millidegrees") from error


def parse_vcgencmd(text: str) -> float:
    """`vcgencmd measure_temp` output (e.g. "temp=48.3'C") in °C."""
    match = _VCGENCMD_OUTPUT.search(text)
    if match is None:
        raise InputError(f"vcgencmd printed {text.strip()!r}, expected temp=NN.N'C")
    return float(match.group(1))


class CpuTemp:
    """Reads the SoC temperature from the chosen source."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.name or "cpu_temp"
        self.interval = settings.interval
        self._source: Literal["sysfs", "vcgencmd"] = "sysfs"

    async def open(self) -> None:
        source = self.settings.source
        if source == "auto":
            source = "sysfs" if self.settings.zone.is_file() else "vcgencmd"
        if source == "vcgencmd" and shutil.which("vcgencmd") is None:
            raise InputError(f"no thermal zone at {self.settings.zone} and no vcgencmd on PATH")
        self._source = source

    async def read(self) -> Sequence[Reading]:
        celsius = await (self._vcgencmd() if self._source == "vcgencmd" else self._sysfs())
        return [system(self.settings.sensor, now_ns(), cpu_temperature_celsius=celsius)]

    async def close(self) -> None:
        return None

    async def _sysfs(self) -> float:
        return parse_millidegrees(await asyncio.to_thread(self.settings.zone.read_text))

    async def _vcgencmd(self) -> float:
        process = await asyncio.create_subprocess_exec(
            "vcgencmd", "measure_temp", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), VCGENCMD_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise InputError(f"vcgencmd did not answer within {VCGENCMD_TIMEOUT_S:g} s") from None
        if process.returncode != 0:
            raise InputError(
                f"vcgencmd failed ({process.returncode}): {stderr.decode(errors='replace').strip()}"
            )
        return parse_vcgencmd(stdout.decode(errors="replace"))


def create(settings: Settings) -> CpuTemp:
    return CpuTemp(settings)
