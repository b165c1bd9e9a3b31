"""`sensormesh bench`: run one benchmark, or all of them into one table.

Each benchmark is a module with `add_arguments(parser)`, `TARGETS` and an
async or plain `run(args) -> dict` returning its figures. Targets are checked
here, against figures measured in the same run (ratios where the machine's
noise would swamp absolute numbers); a benchmark reports, it does not fail
the build.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import sys
import time
from typing import Any

# name -> module
BENCHMARKS: dict[str, str] = {
    "ingest": "sensormesh_bench.ingest.benchmark",
    "query": "sensormesh_bench.query.benchmark",
    "agent": "sensormesh_bench.agent",
    "commands": "sensormesh_bench.commands",
    "alerts": "sensormesh_bench.alerts",
    "frames": "sensormesh_bench.frames",
    "console": "sensormesh_bench.console",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name in [*BENCHMARKS, "all"]:
        sub = benchmarks.add_parser(name, help="every benchmark, defaults only" if name == "all" else None)
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        module = _module(name) if name != "all" else None
        if module is not None:
            module.add_arguments(sub)


def _module(name: str) -> Any:
    try:
        return importlib.import_module(BENCHMARKS[name])
    except ModuleNotFoundError:
        return None


def _run_one(module: Any, args: argparse.Namespace) -> dict[str, Any]:
    result = module.run(args)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return dict(result)


def _defaults(module: Any) -> argparse.Namespace:
    """The module's arguments at their defaults (for `bench all`)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args([])


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'benchmark':<10}{'figure':<30}{'value':>16}  target"]
    for name, figures in results.items():
        targets = {t.figure: t for t in getattr(_module(name), "TARGETS", [])}
        for figure, value in figures.items():
            shown = (
                f"{value:,.3f}"
                if isinstance(value, float)
                else f"{value:,}"
                if isinstance(value, int)
                else str(value)
            )
            target = targets.get(figure)
            verdict = ""
            if target is not None:
                met = target.met(figures)
                verdict = f"{target.op} {target.value:,g}  {'met' if met else 'MISSED'}"
            lines.append(f"{name:<10}{figure:<30}{shown:>16}  {verdict}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    results: dict[str, dict[str, Any]] = {}
    for number, name in enumerate(names, 1):
        module = _module(name)
        if module is None:
            results[name] = {"status": "not built yet"}
            continue
        # Progress on stderr: a benchmark runs for minutes, and stdout stays the table or the JSON.
        print(f"bench {number}/{len(names)} {name}: running ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        results[name] = _run_one(module, args if args.benchmark == name else _defaults(module))
        print(
            f"bench {number}/{len(names)} {name}: done in {time.monotonic() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    if args.json:
        print(json.dumps(results[names[0]] if len(names) == 1 else results))
    else:
        print(_table(results))
    return 0
