"""`SENSORMESH_AGENT_*` variables over the agent's file: names, nesting, JSON tables, precedence, errors.

The rules are pydantic-settings' (which the agent's settings used until it stopped loading it
to save memory), so each test states one of them as the agent's users rely on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_agent.config import AgentSettings, ConfigError
from gateway_agent.env_overrides import VariableError, merged, read_overrides

FILE = 'device_id = "from-file"\n[uplink]\ntarget = "file:1"\ngzip = true\n[commands]\nenabled = false\n'


def load(tmp_path: Path, text: str | None = FILE, **environ: str) -> AgentSettings:
    path = None
    if text is not None:
        path = tmp_path / "agent.toml"
        path.write_text(text)
    return AgentSettings.load(path, environ)


def test_a_variable_names_an_option_in_any_case(tmp_path: Path) -> None:
    assert load(tmp_path, SENSORMESH_AGENT_DEVICE_ID="upper").device_id == "upper"
    assert load(tmp_path, sensormesh_agent_device_id="lower").device_id == "lower"


def test_nested_variables_replace_one_value_and_keep_the_files_others(tmp_path: Path) -> None:
    settings = load(tmp_path, SENSORMESH_AGENT_UPLINK__TARGET="env:2", SENSORMESH_AGENT_UPLINK__TLS="no")
    assert (settings.uplink.target, settings.uplink.tls, settings.uplink.gzip) == ("env:2", False, True)
    assert settings.commands.enabled is False


def test_a_switch_inside_a_json_table_takes_words_too(tmp_path: Path) -> None:
    assert load(tmp_path, SENSORMESH_AGENT_UPLINK='{"tls": "no", "gzip": "on"}').uplink.tls is False


def test_the_environment_alone_configures_the_agent(tmp_path: Path) -> None:
    settings = load(
        tmp_path, None, SENSORMESH_AGENT_DEVICE_ID="pi", SENSORMESH_AGENT_BUFFER__DISK_BUDGET="64MiB"
    )
    assert (settings.device_id, int(settings.buffer.disk_budget)) == ("pi", 64 * 1024 * 1024)


def test_a_table_or_a_list_takes_json_and_nested_variables_refine_it(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        SENSORMESH_AGENT_UPLINK='{"tls": false, "batch_max_readings": 10}',
        SENSORMESH_AGENT_UPLINK__BATCH_MAX_READINGS="20",
        SENSORMESH_AGENT_COMMANDS__PROGRAM='[{"name": "reboot", "argv": ["/sbin/reboot"]}]',
    )
    assert (settings.uplink.target, settings.uplink.tls, settings.uplink.batch_max_readings) == (
        "file:1",
        False,
        20,
    )
    assert [table["name"] for table in settings.commands.program] == ["reboot"]
    assert settings.commands.enabled is False  # the file's, beside the variable's list


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SENSORMESH_AGENT_UPLINK__BATCH_MAX_READINGS": "many"}, r"^SENSORMESH_AGENT_UPLINK__BATCH_MAX_READINGS: Expected `int`, got `str`"),
        ({"SENSORMESH_AGENT_UPLINK__TARGETT": "x"}, r"^SENSORMESH_AGENT_UPLINK__TARGETT: unknown option"),
        ({"SENSORMESH_AGENT_DEVICEID": "pi"}, r"^SENSORMESH_AGENT_DEVICEID: unknown option"),
        ({"SENSORMESH_AGENT_UPLINK": '{"gzip": "maybe"}'}, r"^SENSORMESH_AGENT_UPLINK: gzip: Expected `bool`, got `str`"),
        ({"SENSORMESH_AGENT_UPLINK": "{target"}, r"^SENSORMESH_AGENT_UPLINK: uplink takes JSON here: "),
        ({"SENSORMESH_AGENT_DEVICE_ID__NAME": "x"}, r"^SENSORMESH_AGENT_DEVICE_ID__NAME: device_id is not a table"),
        ({"SENSORMESH_AGENT_COMMANDS__PROGRAM__0__NAME": "x"}, r"set it whole \(SENSORMESH_AGENT_COMMANDS__PROGRAM, JSON"),
        ({"SENSORMESH_AGENT_UPLINK__": "x"}, r"^SENSORMESH_AGENT_UPLINK__: names no option"),
        ({"SENSORMESH_AGENT_BUFFER__DISK_BUDGET": "1MiB"}, r"^SENSORMESH_AGENT_BUFFER__DISK_BUDGET: must be more than 1MiB"),
    ],
)  # fmt: skip
def test_a_bad_variable_is_refused_by_its_name(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, **environ)


def test_a_bad_file_value_is_named_by_the_file_and_the_option(tmp_path: Path) -> None:
    text = 'device_id = "pi"\n[uplink]\nbatch_max_readings = 0\n'
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, 'device_id = "pi"\n[uplink]\ngzip = true\n', SENSORMESH_AGENT_UPLINK__TLS="maybe")
    assert str(raised.value) == "SENSORMESH_AGENT_UPLINK__TLS: Expected `bool`, got `str`"
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text, SENSORMESH_AGENT_UPLINK__TLS="off")
    assert str(raised.value) == f"{tmp_path / 'agent.toml'}: uplink.batch_max_readings: Expected `int` >= 1"


def test_a_secret_value_is_not_echoed_in_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, SENSORMESH_AGENT_TOKEN_FILE="x", SENSORMESH_AGENT_UPLINK='{"target": "smdt_secret"')
    assert "smdt_secret" not in str(raised.value)


def test_the_process_environment_is_read_and_no_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The services' `.env` (SENSORMESH_DATABASE_URL=...) in the working directory is not the agent's."""
    (tmp_path / ".env").write_text(
        "SENSORMESH_DATABASE_URL=postgresql://x\nSENSORMESH_AGENT_DEVICE_ID=dotenv\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENSORMESH_AGENT_UPLINK__TARGET", "env:3")
    (tmp_path / "agent.toml").write_text(FILE)
    settings = AgentSettings.load(tmp_path / "agent.toml")
    assert (settings.device_id, settings.uplink.target) == ("from-file", "env:3")


def test_variables_without_the_prefix_are_not_the_agents() -> None:
    overrides = read_overrides(
        AgentSettings, "SENSORMESH_AGENT_", {"SENSORMESH_DATABASE_URL": "x", "HOME": "/"}
    )
    assert overrides.values == {}


def test_two_variables_setting_one_table_whole_and_inside_agree_on_order() -> None:
    with pytest.raises(VariableError, match="SENSORMESH_AGENT_UPLINK__TLS: uplink is set whole"):
        read_overrides(
            AgentSettings,
            "SENSORMESH_AGENT_",
            {"SENSORMESH_AGENT_UPLINK": '"not a table"', "SENSORMESH_AGENT_UPLINK__TLS": "no"},
        )


leaves = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
tables = st.recursive(
    st.dictionaries(st.sampled_from("abc"), leaves, min_size=1, max_size=3),
    lambda inner: st.dictionaries(st.sampled_from("abcd"), st.one_of(leaves, inner), min_size=1, max_size=3),
    max_leaves=8,
)


def _leaves(table: dict[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every value that is not a table, by its path; an empty table counts as a value."""
    found: dict[tuple[str, ...], Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            found |= _leaves(value, (*path, key))
        else:
            found[(*path, key)] = value
    return found


@given(tables, tables)
def test_merged_keeps_every_override_and_every_file_value_it_does_not_replace(
    base: dict[str, Any], over: dict[str, Any]
) -> None:
    result = _leaves(merged(base, over))
    overridden = _leaves(over)
    for path, value in overridden.items():
        assert result[path] == value
    for path, value in _leaves(base).items():
        if not any(path[: len(other)] == other or other[: len(path)] == path for other in overridden):
            assert result[path] == value
