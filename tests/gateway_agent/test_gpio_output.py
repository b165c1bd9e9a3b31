"""set_output on gpiozero's mock pin factory: initial states, on, off, pulses, active-low boards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from opentelemetry import trace

from gateway_agent.commands.base import CommandHandler, ManagedHandler
from gateway_agent.commands.builtins import BUILTIN_NAMES
from gateway_agent.commands.journal import Outcome
from gateway_agent.commands.runner import run_command
from gateway_agent.commands.settings import CommandsSettings
from gateway_agent.config import ConfigError, build_commands
from tests.gateway_agent.support import until

pytestmark = pytest.mark.timeout(30)
OUTPUTS = [
    {"name": "pump-relay", "pin": 17, "active_high": False, "initial": "off", "description": "pump"},
    {"name": "led", "pin": "GPIO27", "initial": "on"},
]


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.close()
        Device.pin_factory = None


@pytest.fixture
async def set_output(pins: MockFactory) -> AsyncIterator[CommandHandler]:
    [handler] = build_commands(CommandsSettings(gpio_output=OUTPUTS), BUILTIN_NAMES)
    assert isinstance(handler, ManagedHandler)
    await handler.open()
    try:
        yield handler
    finally:
        await handler.close()


async def run(handler: CommandHandler, parameters: dict[str, Any]) -> Outcome:
    return await run_command(handler, 1, "set_output", parameters, 30, trace.NoOpTracer())


def levels(pins: MockFactory, pin: int) -> list[bool]:
    """The pin's electrical levels, oldest first, repeats removed."""
    out: list[bool] = []
    for change in pins.pin(pin).states:
        if not out or out[-1] != change.state:
            out.append(bool(change.state))
    return out


async def test_outputs_start_in_their_initial_state(set_output: CommandHandler, pins: MockFactory) -> None:
    assert pins.pin(17).state is True  # active low, off: the relay board's input is high
    assert pins.pin(27).state is True  # active high, on
    assert set_output.spec.name == "set_output"
    [output, state, seconds] = set_output.spec.parameters
    assert list(output.allowed_values) == ["pump-relay", "led"]
    assert list(state.allowed_values) == ["on", "off", "pulse"]
    assert (seconds.minimum, seconds.maximum, seconds.required) == (0.01, 3600, False)
    assert "pump-relay (pin 17, pump)" in set_output.spec.description


async def test_on_and_off_drive_the_pin_respecting_active_low(
    set_output: CommandHandler, pins: MockFactory
) -> None:
    on = await run(set_output, {"output": "pump-relay", "state": "on"})
    assert on.result == {"output": "pump-relay", "pin": "GPIO17", "state": "on", "active": True}
    assert pins.pin(17).state is False  # active low: on is a low level
    off = await run(set_output, {"output": "led", "state": "off"})
    assert off.succeeded and off.result["active"] is False
    assert pins.pin(27).state is False
    assert levels(pins, 17) == [False, True, False]  # made, off (initial), on


async def test_a_pulse_turns_the_output_on_then_off(set_output: CommandHandler, pins: MockFactory) -> None:
    outcome = await run(set_output, {"output": "pump-relay", "state": "pulse", "seconds": 0.05})
    assert outcome.result == {"output": "pump-relay", "pin": "GPIO17", "state": "pulse", "seconds": 0.05}
    await until(lambda: levels(pins, 17)[-2:] == [False, True])  # on (low), then off (high) again
    await run(set_output, {"output": "led", "state": "pulse"})  # default: 1 s
    await until(lambda: pins.pin(27).state is True)
    await run(set_output, {"output": "led", "state": "off"})  # ends the pulse early
    assert pins.pin(27).state is False


async def test_parameters_are_checked_before_any_pin_moves(
    set_output: CommandHandler, pins: MockFactory
) -> None:
    unknown = await run(set_output, {"output": "fan", "state": "on"})
    too_short = await run(set_output, {"output": "led", "state": "pulse", "seconds": 0.001})
    assert unknown.error == "invalid parameters: parameters.output: must be one of pump-relay, led"
    assert too_short.error == "invalid parameters: parameters.seconds: must be at least 0.01"
    assert levels(pins, 27) == [False, True]


async def test_an_output_whose_pin_cannot_be_opened_fails_when_used_and_the_others_work(
    pins: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    tables = [{"name": "bad", "pin": "GPIO99X"}, {"name": "good", "pin": 22}]
    [handler] = build_commands(CommandsSettings(gpio_output=tables), BUILTIN_NAMES)
    assert isinstance(handler, ManagedHandler)
    await handler.open()  # does not raise: the agent starts anyway
    try:
        assert "event=gpio_output_unavailable output=bad pin=GPIO99X" in caplog.text
        bad = await run(handler, {"output": "bad", "state": "on"})
        good = await run(handler, {"output": "good", "state": "on"})
    finally:
        await handler.close()
    assert bad.error.startswith("output bad (pin GPIO99X) is unavailable: PinInvalidPin")
    assert good.succeeded and pins.pin(22).state is True


@pytest.mark.parametrize(
    ("outputs", "programs", "expected"),
    [
        ([{"name": "a", "pin": 5}, {"name": "a", "pin": 6}], [], "commands.gpio_output: more than one output with name a"),
        ([{"name": "a", "pin": 5}, {"name": "b", "pin": 5}], [], "commands.gpio_output: more than one output with pin 5"),
        ([{"name": "a", "pin": 5}], [{"name": "set_output", "argv": ["x"]}], "more than one command named set_output"),
        ([{"name": "a", "pin": 5, "initial": "high"}], [], "commands.gpio_output[0].initial: Invalid enum value 'high'; expected 'off' or 'on'"),
    ],
)  # fmt: skip
def test_configuration_errors_name_the_option(
    outputs: list[dict[str, Any]], programs: list[dict[str, Any]], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_commands(CommandsSettings(gpio_output=outputs, program=programs), BUILTIN_NAMES)
    assert expected in str(raised.value)


def test_without_outputs_there_is_no_set_output_and_a_program_may_take_the_name() -> None:
    [handler] = build_commands(
        CommandsSettings(program=[{"name": "set_output", "argv": ["x"]}]), BUILTIN_NAMES
    )
    assert handler.spec.name == "set_output"
