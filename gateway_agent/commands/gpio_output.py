"""GPIO outputs switched by command: relays, LEDs, buzzers on the gateway's own pins (`set_output`).

Each `[[commands.gpio_output]]` table declares one output; together they make
one command, `set_output`, with parameters `output` (a declared name),
`state` (on, off or pulse) and `seconds` (the pulse's length, default 1).
Outputs go through gpiozero's DigitalOutputDevice, which picks the Pi's pin
library itself (lgpio on Bookworm, RPi.GPIO, pigpio; GPIOZERO_PIN_FACTORY
chooses). "on" means active: high with `active_high = true` (the default), low
for the many relay boards that switch on a low input.

At start each output is set to its `initial` state. An output whose pin
cannot be opened (no GPIO on this machine, a pin another program holds) does
not stop the agent: it is logged, and `set_output` on it tries again and fails
naming the problem. A pulse runs in the background (gpiozero's blink, once):
the command answers when the output has gone on, and a later on or off ends
the pulse early.

Wiring: the pin drives the relay board's IN (or a LED through ~330 Ω) and the
board shares the Pi's ground; mind the board's logic level (3.3 V on a Pi).

Sample config:

    [[commands.gpio_output]]
      ## The output's name in set_output: a-z, 0-9, '_' and '-', starting with a letter.
      name = "pump-relay"
      ## BCM number (17 is physical pin 11), or a gpiozero pin name ("GPIO17", "BOARD11").
      pin = 17
      ## false when "on" is a low level (most opto-isolated relay boards).
      # active_high = true
      ## The state set when the agent starts: "off" or "on".
      # initial = "off"
      ## What it switches, for operators (shown in set_output's description).
      # description = "Pump relay, channel 1"
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from msgspec import Meta
from sensormesh.v1 import command_delivery_pb2 as delivery

from gateway_agent.commands.base import NAME_MAX_LENGTH, NAME_PATTERN, CommandFailed, CommandHandler
from gateway_agent.options import Options

log = logging.getLogger(__name__)

PULSE_DEFAULT_S = 1.0


class Settings(Options, kw_only=True, frozen=True):
    """One `[[commands.gpio_output]]` table."""

    name: Annotated[str, Meta(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
    pin: Annotated[int | str, Meta(description="BCM number or gpiozero pin name.")]
    active_high: bool = True
    initial: Literal["off", "on"] = "off"
    description: Annotated[str, Meta(max_length=200)] = ""


class _Output:
    """One declared output and its gpiozero device, once opened."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Any = None  # gpiozero.DigitalOutputDevice
        self.problem = ""

    def open(self) -> None:
        """Open the pin and set the initial state (runs in a worker thread: pin libraries block)."""
        from gpiozero import DigitalOutputDevice

        s = self.settings
        try:
            self.device = DigitalOutputDevice(
                s.pin, active_high=s.active_high, initial_value=s.initial == "on"
            )
        except Exception as error:  # gpiozero raises its own kinds (BadPinFactory, PinInvalidPin, ...)
            self.problem = f"{type(error).__name__}: {error}"
            log.error("event=gpio_output_unavailable output=%s pin=%s error=%r", s.name, s.pin, self.problem)
            return
        self.problem = ""
        log.info("event=gpio_output_opened output=%s pin=%s state=%s", s.name, self.device.pin, s.initial)


class SetOutput:
    """`set_output`: switch a declared output on, off, or on for `seconds`."""

    def __init__(self, settings: Sequence[Settings]) -> None:
        self._outputs = {s.name: _Output(s) for s in settings}
        listing = "; ".join(
            f"{s.name} (pin {s.pin}{', ' + s.description if s.description else ''})" for s in settings
        )
        self.spec = delivery.CommandSpec(
            name="set_output",
            description=f"Switch a GPIO output on, off, or on for `seconds` (pulse). Outputs: {listing}"[
                :1024
            ],
            parameters=[
                delivery.CommandParameter(
                    name="output",
                    description="The output.",
                    type=delivery.COMMAND_PARAMETER_TYPE_STRING,
                    required=True,
                    allowed_values=list(self._outputs),
                ),
                delivery.CommandParameter(
                    name="state",
                    description="on, off, or pulse (on for `seconds`, then off).",
                    type=delivery.COMMAND_PARAMETER_TYPE_STRING,
                    required=True,
                    allowed_values=["on", "off", "pulse"],
                ),
                delivery.CommandParameter(
                    name="seconds",
                    description="The pulse's length in seconds (default 1).",
                    type=delivery.COMMAND_PARAMETER_TYPE_NUMBER,
                    minimum=0.01,
                    maximum=3600,
                ),
            ],
        )

    async def open(self) -> None:
        for output in self._outputs.values():
            await asyncio.to_thread(output.open)

    async def close(self) -> None:
        for output in self._outputs.values():
            if output.device is not None:
                await asyncio.to_thread(output.device.close)
                output.device = None

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        output = self._outputs[parameters["output"]]
        if output.device is None:
            await asyncio.to_thread(output.open)
        device = output.device
        if device is None:
            raise CommandFailed(
                f"output {output.settings.name} (pin {output.settings.pin}) is unavailable: {output.problem}"
            )
        state = parameters["state"]
        result: dict[str, Any] = {"output": output.settings.name, "pin": str(device.pin), "state": state}
        if state == "pulse":
            seconds = float(parameters.get("seconds", PULSE_DEFAULT_S))
            device.blink(on_time=seconds, off_time=0, n=1, background=True)  # on now, off after
            result["seconds"] = seconds
            return result
        if state == "on":
            device.on()
        else:
            device.off()
        result["active"] = bool(device.value)
        return result


def create(settings: Sequence[Settings]) -> list[CommandHandler]:
    """One `set_output` for every declared output (none without any)."""
    if not settings:
        return []
    if len(settings) > 64:
        raise ValueError(f"{len(settings)} outputs; set_output takes at most 64 (its allowed values)")
    for field in ("name", "pin"):
        values = [str(getattr(s, field)) for s in settings]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"more than one output with {field} {', '.join(twice)}")
    return [SetOutput(settings)]
