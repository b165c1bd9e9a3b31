"""Program commands: argv with placeholders and no shell, exit codes, outputs, timeouts, config errors.

The programs are small real ones (printf, sh -c for an exit status or a child that outlives its
parent); sh here is the test's choice of program, never something the agent puts in front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

from gateway_agent.commands.base import CommandHandler
from gateway_agent.commands.builtins import BUILTIN_NAMES
from gateway_agent.commands.journal import Outcome
from gateway_agent.commands.program import render
from gateway_agent.commands.runner import run_command
from gateway_agent.commands.settings import CommandsSettings
from gateway_agent.config import ConfigError, build_commands
from tests.gateway_agent.support import until

pytestmark = pytest.mark.timeout(60)
PRINT_EACH = ["/usr/bin/printf", "[%s]\\n"]  # one line per argument: shows where arguments split


def program(**table: Any) -> CommandHandler:
    [handler] = build_commands(CommandsSettings(program=[{"name": "prog", **table}]), BUILTIN_NAMES)
    return handler


async def run(handler: CommandHandler, parameters: dict[str, Any], timeout_s: float = 30) -> Outcome:
    return await run_command(handler, 1, handler.spec.name, parameters, timeout_s, trace.NoOpTracer())


async def test_placeholders_become_single_arguments_and_nothing_reaches_a_shell(tmp_path: Path) -> None:
    handler = program(
        argv=[*PRINT_EACH, "{target}", "--count={count}", "{flag}", "{{literal}}"],
        parameters=[
            {"name": "target", "required": True},
            {"name": "count", "type": "integer"},
            {"name": "flag", "type": "boolean"},
        ],
    )
    marker = tmp_path / "touched"
    hostile = f"; rm -rf / $(touch {marker}) `touch {marker}` | cat && echo"
    outcome = await run(handler, {"target": hostile, "count": 3.0, "flag": False})
    assert outcome.succeeded, outcome.error
    assert outcome.result == {
        "exit_code": 0,
        "stdout": f"[{hostile}]\n[--count=3]\n[false]\n[{{literal}}]\n",
        "stderr": "",
    }
    assert not marker.exists()


def test_an_optional_parameter_left_out_leaves_its_argument_out() -> None:
    argv = ["tool", "{mode}", "--level={level}", "x{mode}y"]
    assert render(argv, {}) == ["tool", "--level=", "xy"]
    assert render(argv, {"mode": "on", "level": 2.5}) == ["tool", "on", "--level=2.5", "xony"]


async def test_a_non_zero_exit_fails_with_the_code_and_stderr_keeping_the_result() -> None:
    handler = program(argv=["/bin/sh", "-c", "echo partial; echo 'relay 2 not found' >&2; exit 3"])
    outcome = await run(handler, {})
    assert not outcome.succeeded
    assert outcome.error == "exit code 3: relay 2 not found"
    assert outcome.result == {"exit_code": 3, "stdout": "partial\n", "stderr": "relay 2 not found\n"}


async def test_outputs_are_cut_to_their_last_4_kib_saying_so() -> None:
    handler = program(argv=["/bin/sh", "-c", "head -c 10000 /dev/zero | tr '\\000' a; printf END"])
    outcome = await run(handler, {})
    stdout = outcome.result["stdout"]
    assert stdout.startswith("[cut: the first 5907 bytes were left out]\n")
    assert stdout.endswith("a" * 4093 + "END") and len(stdout.split("\n", 1)[1]) == 4096


async def test_a_program_that_cannot_start_fails_saying_why() -> None:
    outcome = await run(program(argv=["/nonexistent/relayctl"]), {})
    assert outcome.error == "cannot run /nonexistent/relayctl: No such file or directory"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")  # killed, waiting for init to reap it


@pytest.mark.parametrize("bound_by", ["the program's timeout", "the command's result timeout"])
async def test_on_timeout_the_program_and_its_children_are_killed(tmp_path: Path, bound_by: str) -> None:
    pid_file = tmp_path / "child.pid"
    ours = bound_by == "the program's timeout"
    handler = program(
        # A script whose child outlives it unless the whole process group goes.
        argv=["/bin/sh", "-c", 'sleep 60 & echo $! > "$0"; wait', "{pid_file}"],
        parameters=[{"name": "pid_file", "required": True}],
        timeout="300ms" if ours else "30s",
    )
    outcome = await run(handler, {"pid_file": str(pid_file)}, timeout_s=30 if ours else 0.3)
    assert not outcome.succeeded
    if ours:
        assert outcome.error == "timed out after 0.3 s; the program and its children were killed"
    else:
        assert outcome.error == "timed out after 0.3 s on the device"
    await until(pid_file.exists)
    child = int(pid_file.read_text())
    await until(lambda: _gone(child))


def _physical(path: Path) -> Path:
    return path.resolve()  # what pwd prints


async def test_env_and_working_dir_reach_the_program(tmp_path: Path) -> None:
    handler = program(argv=["/bin/sh", "-c", 'echo "$RELAY_BOARD $(pwd)"'], env={"RELAY_BOARD": "usb0"},
                      working_dir=str(tmp_path))  # fmt: skip
    outcome = await run(handler, {})
    assert outcome.result["stdout"] == f"usb0 {_physical(tmp_path)}\n"


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ([{"name": "prog", "argv": ["x", "{channel}"]}], "commands.program[0]: argv[1]: {channel} is not a declared parameter; declared: none"),
        ([{"name": "prog", "argv": ["x", "{n:>3}"], "parameters": [{"name": "n"}]}], "argv[1]: {n:>3} is not a declared parameter"),
        ([{"name": "prog", "argv": ["x", "{"]}], "argv[1]: Single '{' encountered in format string"),
        ([{"name": "Relay", "argv": ["x"]}], "commands.program[0].name: Expected `str` matching regex"),
        ([{"name": "prog", "argv": []}], "commands.program[0].argv: Expected `array` of length >= 1"),
        ([{"name": "prog", "argv": ["x"], "shell": True}], "commands.program[0].shell: unknown option"),
        ([{"name": "prog", "argv": ["x"], "parameters": [{"name": "n", "type": "number", "allowed_values": ["1"]}]}],
         "allowed_values is for string parameters"),
        ([{"name": "ping", "argv": ["x"]}], "commands: more than one command named ping"),
        ([{"name": "prog", "argv": ["x"]}, {"name": "prog", "argv": ["y"]}], "more than one command named prog"),
    ],
)  # fmt: skip
def test_configuration_errors_name_the_option(tables: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_commands(CommandsSettings(program=tables), BUILTIN_NAMES)
    assert expected in str(raised.value)
