"""The agent's options (gateway_agent/options.py): the types msgspec does not know, and errors that
name the option as agent.toml writes it."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_agent.byte_sizes import ByteSize
from gateway_agent.commands import mqtt as mqtt_command
from gateway_agent.config import AgentSettings
from gateway_agent.durations import Duration
from gateway_agent.inputs import mqtt as mqtt_input
from gateway_agent.options import OptionsError, Secret
from gateway_agent.uplink_settings import UplinkSettings


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("10ms", 0.01), ("1.5s", 1.5), ("5m", 300), ("1h", 3600), ("2d", 172800), (" 3 s ", 3),
     ("PT1M30S", 90), (2, 2), (0.25, 0.25), (timedelta(minutes=1), 60), ("00:00:10", 10),
     ("1 day, 02:00:00", 93600), ("2 days", 172800)],
)  # fmt: skip
def test_a_duration_is_read_as_people_write_it(written: object, seconds: float) -> None:
    assert Duration.parse(written).total_seconds() == seconds


@pytest.mark.parametrize(
    "written", ["10 parsecs", "", "-1s", "-PT1S", -1, True, None, [1], float("inf"), float("nan"), 1e20]
)
def test_a_duration_that_is_none_says_what_is_expected(written: object) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 10ms"):
        Duration.parse(written)


@given(st.integers(min_value=1, max_value=10**10))
def test_a_duration_spelled_reads_back_as_itself(milliseconds: int) -> None:
    duration = Duration(milliseconds=milliseconds)
    assert Duration.parse(duration.spelled()) == duration


@pytest.mark.parametrize(
    ("written", "size"),
    [("512MiB", 512 * 2**20), ("1.5GB", 1_500_000_000), ("64 kib", 65536), ("4096", 4096), (2048, 2048),
     ("2G", 2 * 10**9), (".5GB", 500_000_000), ("8kbit", 1000), (1e9, 10**9), ("1PiB", 2**50)],
)  # fmt: skip
def test_a_size_is_read_in_binary_and_decimal_units(written: object, size: int) -> None:
    assert ByteSize.parse(written) == size


@pytest.mark.parametrize("written", ["12 parsecs", "1 zb", -1, 1.5, True, "1e9"])
def test_a_size_that_is_none_says_what_is_expected(written: object) -> None:
    with pytest.raises(ValueError, match=r"expected a size such as 512MiB|must not be negative"):
        ByteSize.parse(written)


@given(st.integers(min_value=0, max_value=2**50))
def test_a_size_shown_reads_back_as_itself(size: int) -> None:
    assert ByteSize.parse(ByteSize(size).human()) == size


def test_a_secret_is_hidden_from_reprs_and_errors() -> None:
    settings = mqtt_input.Settings.validate({"topics": ["#"], "username": "u", "password": "hunter2"})
    assert settings.broker.password == Secret("hunter2")
    assert settings.broker.password is not None and settings.broker.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.broker.password)
    with pytest.raises(OptionsError) as raised:
        mqtt_input.Settings.validate({"topics": ["#"], "password": 42})
    assert str(raised.value) == "password: Expected `str`, got `int`"


def test_the_agents_settings_show_the_tables_its_inputs_and_commands_validate_later_without_values() -> None:
    # An input's or command's table is validated by its kind when the agent builds it: until then
    # its password is a plain string, so the settings' repr shows the tables' option names only.
    settings = AgentSettings.validate(
        {
            "device_id": "pi",
            "inputs": {"mqtt": [{"topics": ["#"], "password": "hunter2", "tls": {"ca": "x"}}]},
            "commands": {"mqtt": [{"name": "vent", "topic": "t", "password": "hunter3"}]},
        }
    )
    shown = repr(settings)
    assert "hunter2" not in shown and "hunter3" not in shown
    assert "inputs={'mqtt': [{'topics': [...], 'password': ..., 'tls': {'ca': ...}}]}" in shown
    assert "mqtt=[{'name': ..., 'topic': ..., 'password': ...}]" in shown
    assert settings.inputs["mqtt"][0]["password"] == "hunter2"  # the values are all still there
    # Every other option is shown as msgspec shows it.
    assert repr(settings.uplink) == msgspec.Struct.__repr__(settings.uplink)
    assert "device_id='pi'" in shown


@pytest.mark.parametrize(
    ("written", "read"), [("no", False), ("ON", True), ("y", True), ("0", False), (True, True)]
)
def test_a_switch_is_read_in_pydantics_spellings(written: object, read: bool) -> None:
    assert UplinkSettings.validate({"tls": written}).tls is read
    command = mqtt_command.Settings.validate(
        {"name": "vent", "topic": "t", "tls": written, "parameters": [{"name": "on", "required": written}]}
    )
    assert (command.broker.tls, command.parameters[0].required) == (read, read)


def test_environment_strings_are_read_as_the_options_types() -> None:
    settings = UplinkSettings.validate({"tls": "false", "batch_max_readings": "20", "backoff_max": "90s"})
    assert (settings.tls, settings.batch_max_readings, settings.backoff_max) == (
        False,
        20,
        Duration(seconds=90),
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"batch_max_readings": 0}, "batch_max_readings: Expected `int` >= 1"),
        ({"batch_max_readings": 10.5}, "batch_max_readings: Expected `int`, got `float`"),
        ({"batch_max_age": "soon"}, "batch_max_age: expected a duration such as 10ms"),
        ({"targett": "x"}, "targett: unknown option"),
        ({"target": ""}, "target: Expected `str` of length >= 1"),
        ([], "settings: Expected `object`, got `array`"),
    ],
)
def test_an_error_names_the_option(table: object, message: str) -> None:
    with pytest.raises(OptionsError) as raised:
        UplinkSettings.validate(table)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)


def test_the_brokers_options_are_written_beside_the_tables_own() -> None:
    command = mqtt_command.Settings.validate(
        {"name": "vent", "topic": "vent/set", "host": "broker", "port": 8883}
    )
    assert (command.broker.host, command.broker.port, command.topic) == ("broker", 8883, "vent/set")
    with pytest.raises(OptionsError) as raised:
        mqtt_command.Settings.validate({"name": "vent", "topic": "vent/set", "port": 0})
    assert raised.value.describe("commands.mqtt[0]") == "commands.mqtt[0].port: Expected `int` >= 1"
    with pytest.raises(OptionsError) as raised:
        mqtt_input.Settings.validate({"topics": ["#"], "broker": {"host": "x"}})
    assert raised.value.describe() == "broker: unknown option (its options go in this table itself)"


def test_a_required_option_left_out_is_named() -> None:
    with pytest.raises(OptionsError) as raised:
        mqtt_command.Settings.validate({"name": "vent"})
    assert str(raised.value) == "topic: required, not set"
