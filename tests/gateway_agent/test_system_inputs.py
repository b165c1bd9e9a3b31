"""cpu_temp and disk against their real seams: a thermal-zone file, vcgencmd's output, statvfs."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from gateway_agent.inputs import cpu_temp, disk
from gateway_agent.inputs.base import InputError


async def test_cpu_temperature_from_a_thermal_zone_in_millidegrees(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    sensor = cpu_temp.CpuTemp(cpu_temp.Settings(zone=zone))
    await sensor.open()
    [reading] = await sensor.read()
    assert reading.sensor == "cpu"
    assert reading.system.cpu_temperature_celsius == pytest.approx(48.312)
    assert not reading.system.HasField("disk_used_bytes")


async def test_unreadable_zone_content_names_what_it_found(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("n/a\n")
    sensor = cpu_temp.CpuTemp(cpu_temp.Settings(zone=zone))
    await sensor.open()
    with pytest.raises(InputError, match="'n/a'"):
        await sensor.read()


def _fake_vcgencmd(folder: Path, output: str) -> None:
    # vcgencmd itself is the seam here: a script printing what the firmware tool prints.
    script = folder / "vcgencmd"
    script.write_text(f'#!/bin/sh\necho "{output}"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


async def test_vcgencmd_is_used_when_no_zone_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vcgencmd(tmp_path, "temp=51.0'C")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sensor = cpu_temp.CpuTemp(cpu_temp.Settings(zone=tmp_path / "missing"))
    await sensor.open()
    [reading] = await sensor.read()
    assert reading.system.cpu_temperature_celsius == pytest.approx(51.0)


def test_vcgencmd_output_is_parsed_or_refused() -> None:
    assert cpu_temp.parse_vcgencmd("temp=48.3'C\n") == pytest.approx(48.3)
    with pytest.raises(InputError, match="expected temp="):
        cpu_temp.parse_vcgencmd('error=1 error_msg="Command not registered"')


async def test_no_source_at_all_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    sensor = cpu_temp.CpuTemp(cpu_temp.Settings(zone=tmp_path / "missing"))
    with pytest.raises(InputError, match="no vcgencmd"):
        await sensor.open()


async def test_disk_usage_matches_statvfs_of_each_path(tmp_path: Path) -> None:
    sensor = disk.Disk(disk.Settings(paths=[tmp_path, Path("/")]))
    first, root = await sensor.read()
    assert first.sensor == f"disk:{tmp_path}"[:64]
    assert root.sensor == "disk:/"
    total, _, _ = shutil.disk_usage(tmp_path)
    used, free = first.system.disk_used_bytes, first.system.disk_free_bytes
    assert 0 < used <= total
    assert free == pytest.approx(shutil.disk_usage(tmp_path).free, rel=0.01)


async def test_missing_path_raises() -> None:
    sensor = disk.Disk(disk.Settings(paths=[Path("/no/such/path")]))
    with pytest.raises(FileNotFoundError):
        await sensor.read()
