"""Agent settings: the example configs, environment overrides, errors that name the option."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway_agent.config import AgentSettings, ConfigError, build_commands, build_inputs

PACKAGE = Path(__file__).resolve().parents[2] / "gateway_agent"


def test_the_example_config_covers_every_registered_input() -> None:
    from gateway_agent.inputs import INPUTS

    settings = AgentSettings.load(PACKAGE / "agent.example.toml")
    assert set(settings.inputs) == set(INPUTS)
    assert len(build_inputs(settings.inputs)) == len(INPUTS)
    assert settings.uplink.tls is True


def test_every_sample_config_in_an_input_docstring_is_valid() -> None:
    import importlib
    import tomllib

    from gateway_agent.inputs import INPUTS

    for name, module_name in INPUTS.items():
        doc = importlib.import_module(module_name).__doc__ or ""
        block = doc[doc.index("Sample config:") :].split("\n\n")[1]
        table = tomllib.loads("\n".join(line[4:] for line in block.splitlines()))
        assert name in table["inputs"], name
        build_inputs(table["inputs"])


def test_simulated_example_loads() -> None:
    settings = AgentSettings.load(PACKAGE / "agent.simulated.toml")
    assert [i.name for i in build_inputs(settings.inputs)] == [
        "sim-imu",
        "sim-environment",
        "sim-system",
        "sim-generic",
    ]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "from-file"\n[uplink]\ntarget = "file:1"\ngzip = true\n')
    monkeypatch.setenv("SENSORMESH_AGENT_DEVICE_ID", "from-env")
    monkeypatch.setenv("SENSORMESH_AGENT_UPLINK__TARGET", "env:2")
    monkeypatch.setenv("SENSORMESH_AGENT_BUFFER__DISK_BUDGET", "64MiB")
    settings = AgentSettings.load(path)
    assert settings.device_id == "from-env"
    assert settings.uplink.target == "env:2"
    assert settings.uplink.gzip is True  # untouched values from the file stay
    assert int(settings.buffer.disk_budget) == 64 * 1024 * 1024


def test_token_from_a_file_or_a_clear_error(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sm_abc\n")
    assert AgentSettings(device_id="pi", token_file=token_file).device_token() == "sm_abc"
    with pytest.raises(ConfigError, match="no device token"):
        AgentSettings(device_id="pi").device_token()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"bme280": [{"address": 0x40}]},
            r"inputs\.bme280\[0\]\.address: Invalid enum value 64; expected 118 or 119",
        ),
        ({"thermocouple": [{}]}, r"inputs\.thermocouple: unknown input; known: ble_imu, bme280"),
        ({"simulated": [{"kind": "imu"}, {"kind": "imu"}]}, "more than one input named sim-imu"),
        (
            {"mpu6050": [{"sample_rate": 5}]},
            r"inputs\.mpu6050\[0\]\.sample_rate: unknown option",
        ),
    ],
)
def test_bad_inputs_are_refused_naming_the_table_and_field(
    inputs: dict[str, list[dict[str, object]]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_inputs(inputs)


def test_bad_device_id_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "Not A DNS Label"\n')
    with pytest.raises(ConfigError, match="device_id"):
        AgentSettings.load(path)


def test_durations_accept_telegraf_suffixes() -> None:
    settings = AgentSettings.validate(
        dict(device_id="pi", uplink={"batch_max_age": "250ms", "stream_max_duration": "2m"})
    )
    assert settings.uplink.batch_max_age.total_seconds() == 0.25
    assert settings.uplink.stream_max_duration.total_seconds() == 120


@pytest.fixture
def unit_file(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's `sensormesh` (systemd checks it exists)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (the unit is checked where systemd is)")
    import sys

    text = (PACKAGE / "systemd" / "sensormesh-agent.service").read_text()
    executable = Path(sys.executable).parent / "sensormesh"
    path = tmp_path / "sensormesh-agent.service"
    path.write_text(text.replace("/opt/sensormesh/bin/sensormesh", str(executable)))
    return path


def test_systemd_unit_verifies_cleanly(unit_file: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_unit_is_hardened(unit_file: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr:
        pytest.skip("this systemd-analyze predates --offline (systemd 250)")
    line = next(line for line in result.stdout.splitlines() if "Overall exposure level" in line)
    exposure = float(line.split(":")[1].split()[0])
    assert exposure <= 2.5, line  # systemd rates 0-2 "OK"; a default service is about 9.6 "UNSAFE"


def test_the_example_config_declares_every_command_kind() -> None:
    from gateway_agent.commands import KINDS
    from gateway_agent.commands.builtins import BUILTIN_NAMES

    settings = AgentSettings.load(PACKAGE / "agent.example.toml")
    assert settings.commands.enabled is True
    assert {kind for kind, tables in settings.commands.tables().items() if tables} == set(KINDS)
    names = [h.spec.name for h in build_commands(settings.commands, BUILTIN_NAMES)]
    assert names == ["relay", "pump-plug", "set_output"]


def test_every_sample_config_in_a_command_docstring_is_valid() -> None:
    import importlib
    import tomllib

    from gateway_agent.commands import KINDS
    from gateway_agent.commands.builtins import BUILTIN_NAMES
    from gateway_agent.commands.settings import CommandsSettings

    for kind, module_name in KINDS.items():
        doc = importlib.import_module(module_name).__doc__ or ""
        block = doc[doc.index("Sample config:") :].split("\n\n")[1]
        table = tomllib.loads("\n".join(line[4:] for line in block.splitlines()))
        assert kind in table["commands"], kind
        assert build_commands(CommandsSettings.validate(table["commands"]), BUILTIN_NAMES), kind


def test_bad_commands_are_refused_naming_the_option(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "pi"\n[commands]\nenabled = true\n[[commands.relay]]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"commands\.relay: unknown option"):
        AgentSettings.load(path)
    path.write_text('device_id = "pi"\n[[commands.program]]\nname = "x"\nargv = ["a"]\ntimeout = "soon"\n')
    with pytest.raises(ConfigError, match=r"commands\.program\[0\]\.timeout: "):
        build_commands(AgentSettings.load(path).commands, ())
