"""The input registry: a name in the config -> the module that implements it.

Each module exposes `Settings` (an `InputSettings` subclass) and
`create(settings) -> PolledInput | StreamingInput`. Modules are imported only
when configured, so a Pi without BLE never loads bleak.
"""

from __future__ import annotations

import importlib
from typing import Any

INPUTS: dict[str, str] = {
    name: f"gateway_agent.inputs.{name}"
    for name in ("bme280", "mpu6050", "ble_imu", "cpu_temp", "disk", "mqtt", "simulated", "camera")
}


def add(name: str, module: str) -> None:
    """Register an input implemented outside this package."""
    INPUTS[name] = module


def plugin(name: str) -> Any:
    """The module implementing input `name`; KeyError names the unknown input."""
    return importlib.import_module(INPUTS[name])
