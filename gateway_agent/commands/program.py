"""Commands that run a program: switch a relay with a vendor tool, restart a service, rotate a log.

The program is started directly from `argv`, never through a shell: an
argument is exactly one argv element, whatever its characters, so a parameter
value like "; rm -rf /" reaches the program as that literal text. Elements may
hold `{parameter}` placeholders, replaced by the parameter's value as text
(numbers without a trailing ".0", booleans as true/false; `{{` and `}}` are
literal braces). A placeholder must name a declared parameter; an optional
parameter left out becomes "", and an element that is only its placeholder is
left out altogether. Parameters are checked against their declarations before
the program starts (gateway_agent/commands/runner.py).

The program runs in its own process group with stdin from /dev/null; on its
timeout (or when the command's result timeout cancels it) the whole group is
killed, so a script's children go too. The result is
`{"exit_code", "stdout", "stderr"}`, each output cut to its last 4 KiB (saying
so); a non-zero exit is a failure naming the exit code and the end of stderr,
with the result kept.

The program runs as the agent's user, in the agent's sandbox: under the
shipped systemd unit that is a read-only system and a closed device policy, so
a program that needs a device or a write goes with a drop-in that allows it
(gateway_agent/systemd/sensormesh-agent.service says how). If the agent is
killed outright (SIGKILL, power loss) while a program runs, the program is not
waited for; systemd stops it with the unit's other processes.

Sample config:

    [[commands.program]]
      ## The command's name as operators send it: a-z, 0-9, '_' and '-', starting with a letter.
      name = "relay"
      description = "Switch a relay of the 4-channel board."
      ## The program and its arguments; `{name}` is replaced by parameter `name`'s value.
      argv = ["/usr/local/bin/relayctl", "--channel", "{channel}", "{state}"]
      ## Time the program has before its process group is killed.
      # timeout = "10s"
      ## Working directory; default: the agent's.
      # working_dir = "/var/lib/sensormesh-agent"
      ## Variables added to the agent's environment for the program.
      # env = { RELAY_BOARD = "/dev/ttyUSB0" }
      ## Parameters: name, type (string, number, integer or boolean), required, allowed_values
      ## (strings only), minimum and maximum (numbers only), description.
      [[commands.program.parameters]]
        name = "channel"
        type = "integer"
        required = true
        minimum = 1
        maximum = 4
      [[commands.program.parameters]]
        name = "state"
        required = true
        allowed_values = ["on", "off"]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import string
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from sensormesh.v1.command_delivery_pb2 import CommandSpec

from gateway_agent.commands.base import CommandFailed, CommandHandler
from gateway_agent.commands.settings import DeclaredCommand
from gateway_agent.durations import Duration

OUTPUT_MAX_BYTES = 4096
"""Each output is cut to its last this many bytes."""
STDERR_IN_MESSAGE = 512
"""Characters of stderr's end quoted in a failure's message."""


class Settings(DeclaredCommand, kw_only=True, frozen=True):
    """One `[[commands.program]]` table."""

    argv: Annotated[
        list[str], Meta(min_length=1, description="The program and its arguments, with {placeholders}.")
    ]
    timeout: Annotated[Duration, Meta(description="Kill the program after this long.")] = Duration(seconds=10)
    working_dir: Annotated[Path, Meta(description="Working directory; default: the agent's.")] | None = None
    env: Annotated[dict[str, str], Meta(description="Added to the agent's environment.")] = msgspec.field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.argv[0]:
            raise ValueError("argv: the program (argv[0]) must not be empty")
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be more than 0")
        declared = {p.name for p in self.parameters}
        for index, element in enumerate(self.argv):
            try:
                fields = list(string.Formatter().parse(element))
            except ValueError as error:
                raise ValueError(f"argv[{index}]: {error} (write {{{{ and }}}} for literal braces)") from None
            for _, field, spec, conversion in fields:
                if field is None:
                    continue
                if field not in declared or spec or conversion:
                    raise ValueError(
                        f"argv[{index}]: {{{field}{'!' + conversion if conversion else ''}"
                        f"{':' + spec if spec else ''}}} is not a declared parameter;"
                        f" declared: {', '.join(sorted(declared)) or 'none'}"
                    )


def as_text(value: Any) -> str:
    """A parameter's value as an argument: JSON's spelling of booleans, whole numbers without ".0"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render(argv: Sequence[str], parameters: dict[str, Any]) -> list[str]:
    """`argv` with its placeholders replaced (see the module doc): one element stays one argument."""
    rendered = []
    for element in argv:
        parts = list(string.Formatter().parse(element))
        if (
            len(parts) == 1
            and parts[0][0] == ""
            and parts[0][1] is not None
            and parts[0][1] not in parameters
        ):
            continue  # only the placeholder of an optional parameter left out
        text = ""
        for literal, field, _, _ in parts:
            text += literal
            if field is not None:
                text += as_text(parameters[field]) if field in parameters else ""
        rendered.append(text)
    return rendered


async def _tail(stream: asyncio.StreamReader | None) -> str:
    """Everything `stream` says until EOF, cut to its last OUTPUT_MAX_BYTES (saying how much went)."""
    if stream is None:
        return ""
    kept, total = bytearray(), 0
    while chunk := await stream.read(65536):
        total += len(chunk)
        kept += chunk
        del kept[:-OUTPUT_MAX_BYTES]
    text = kept.decode("utf-8", errors="replace")
    if total > OUTPUT_MAX_BYTES:
        text = f"[cut: the first {total - OUTPUT_MAX_BYTES} bytes were left out]\n{text}"
    return text


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the group id is its pid


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class Program:
    """Runs the configured program with the command's parameters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spec: CommandSpec = settings.spec()

    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        argv = render(s.argv, parameters)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=s.working_dir,
                env={**os.environ, **s.env} if s.env else None,
                start_new_session=True,
            )
        except OSError as error:
            raise CommandFailed(f"cannot run {argv[0]}: {error.strerror or error}") from error
        limit_s = s.timeout.total_seconds()
        try:
            async with asyncio.timeout(limit_s):
                stdout, stderr = await asyncio.gather(_tail(process.stdout), _tail(process.stderr))
                code = await process.wait()
        except TimeoutError:
            raise CommandFailed(
                f"timed out after {limit_s:g} s; the program and its children were killed"
            ) from None
        finally:
            if process.returncode is None:
                _kill_group(process)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await process.wait()
        result = {"exit_code": code, "stdout": stdout, "stderr": stderr}
        if code != 0:
            how = f"exit code {code}" if code > 0 else f"killed by signal {_signal_name(-code)}"
            tail = stderr.strip()[-STDERR_IN_MESSAGE:]
            raise CommandFailed(f"{how}{': ' + tail if tail else ''}", result)
        return result


def create(settings: Sequence[Settings]) -> list[CommandHandler]:
    return [Program(s) for s in settings]
