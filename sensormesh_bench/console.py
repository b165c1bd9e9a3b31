"""`sensormesh bench console`: the web console's first-load script, a day's chart draw, and the
JS heap of a live chart over minutes (issue 17: measured here, not in timed tests).

Everything runs for real: `sensormesh up` in a temporary folder (embedded PostgreSQL, the
services, Envoy serving the built console, the simulated devices), its admin key from there,
and Debian's headless Chromium (/usr/bin/chromium) driven by Playwright, as tests/console
does. Figures:

- script_gzip_bytes: the JavaScript the first load fetches (every response of type "script"
  up to the signed-in fleet page), each gzipped at zlib's default level 6 and summed;
  script_bytes the same uncompressed, script_files how many;
- day_draw_ms_p50 / _max: a device with a day of 1 Hz temperature readings (86,400, through
  ingest's UploadReadings with backdated sample times, rollups refreshed as ingest's refresher
  would), its page loaded `--loads` times with the "24 h" range: the console's own
  performance measure "sensormesh:history-draw", from the last history page's arrival
  (1,440 one-minute buckets in columns) to the next animation frame after uPlot's setData;
- heap_mb_1m, heap_mb_end, heap_ratio: vibration-pi's 100 Hz IMU (acceleration_x) on a live
  chart for `--minutes`; the JS heap in use (CDP HeapProfiler.collectGarbage, then
  Runtime.getHeapUsage) at `--first-heap-s` (60) and at the end, and end over first;
  live_points is what the chart's live tail received, live_points_per_s per second of it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import math
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from sensormesh_bench.console_stack import ConsoleStack, running_stack
from sensormesh_bench.targets import Target

if TYPE_CHECKING:
    from playwright.sync_api import CDPSession, Page, Response

TARGETS = [
    Target("script_gzip_bytes", "<=", 300 * 1024),
    Target("day_draw_ms_p50", "<=", 500),
    Target("heap_ratio", "<=", 1.2),
]
CHROMIUM = Path("/usr/bin/chromium")
DRAW_MEASURE = "sensormesh:history-draw"
DAY_RANGE = "24 h"
LIVE_DEVICE, LIVE_SERIES = "vibration-pi", "sim-imu/acceleration_x"  # 100 Hz in `sensormesh up`
SEEDED_SERIES = "bme280/temperature"  # what query.load.seed_history writes
TIMEOUT_MS = 60_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="how long the live chart runs (default 10)"
    )
    parser.add_argument(
        "--first-heap-s",
        type=float,
        default=60.0,
        help="when the first heap sample is taken, seconds into the live chart (default 60)",
    )
    parser.add_argument("--loads", type=int, default=5, help="page loads of the day's chart (default 5)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make setup` installs it (apt-get install chromium)")
    if args.first_heap_s >= args.minutes * 60:
        raise ValueError("--first-heap-s must be shorter than --minutes")
    with (
        tempfile.TemporaryDirectory(prefix="sensormesh-bench-console-") as folder,
        running_stack(Path(folder)) as stack,
    ):
        device = f"bench-day-{int(time.time())}"
        end = asyncio.run(_seed_day(stack, device))
        return _measure(args, stack, device, end)


async def _seed_day(stack: ConsoleStack, device: str) -> datetime:
    """A device with a day of 1 Hz readings ending at the last full minute, its rollups
    refreshed; where the day ends."""
    import grpc

    from sensormesh_bench.query.load import day_end, seed_history

    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        created = await client.post(
            "v1/devices",
            headers={"authorization": f"Bearer {stack.admin_key}"},
            json={"deviceId": device, "displayName": "bench: a day of 1 Hz"},
        )
        created.raise_for_status()
        token = str(created.json()["token"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ingest_port}") as channel:
        end = day_end()
        await seed_history(channel, device, token, end)
    await _refresh_rollups(stack.database_url)
    return end


async def _refresh_rollups(url: str) -> None:
    """Run the rollup refresh until it ran (the stack's own refresher may hold its lock) and
    caught up; TimescaleDB's continuous aggregates need none."""
    import asyncpg

    from sensormesh_core.config import StorageSettings
    from sensormesh_core.storage.rollups import has_rollup_tables, refresh_rollups

    conn = await asyncpg.connect(url)
    try:
        if not await has_rollup_tables(conn):
            return
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            report = await refresh_rollups(conn, StorageSettings())
            if report.ran and report.caught_up:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError("the rollups did not catch up within 5 minutes")
    finally:
        await conn.close()


def _measure(args: argparse.Namespace, stack: ConsoleStack, device: str, end: datetime) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            figures = _first_load(page, stack)
            figures |= _day_draws(page, stack, device, end, args.loads)
            figures |= _live_heap(page, context.new_cdp_session(page), stack, args)
            return figures
        finally:
            browser.close()


def _first_load(page: Page, stack: ConsoleStack) -> dict[str, Any]:
    """Sign in on a fresh page; the scripts fetched up to the fleet page, gzipped."""
    scripts: list[Response] = []

    def keep(response: Response) -> None:
        if response.request.resource_type == "script":
            scripts.append(response)

    page.on("response", keep)
    page.goto(stack.url)
    page.get_by_label("API key").fill(stack.admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("caller").wait_for()
    page.get_by_test_id("device-row").first.wait_for()
    page.remove_listener("response", keep)
    bodies = [r.body() for r in scripts]
    if not bodies:
        raise RuntimeError("the first load fetched no script")
    return {
        "script_files": len(bodies),
        "script_bytes": sum(len(b) for b in bodies),
        "script_gzip_bytes": sum(len(gzip.compress(b, compresslevel=6)) for b in bodies),
    }


def _day_draws(page: Page, stack: ConsoleStack, device: str, end: datetime, loads: int) -> dict[str, Any]:
    """Load the seeded device's page `loads` times, each with a day at 1 minute; the draw times."""
    durations, buckets = [], 0
    for _ in range(loads):
        page.goto(f"{stack.url}#/devices/{device}")
        page.reload()  # a fresh document each time: nothing cached in the page's JS
        _choose_series(page, SEEDED_SERIES)
        page.get_by_test_id("history-status").filter(has_text="over 15 min").wait_for()
        chosen_at = time.time()
        page.get_by_test_id("range").select_option(label=DAY_RANGE)
        handle = page.wait_for_function(
            """([name, range]) => performance.getEntriesByName(name)
                .filter((e) => e.detail && e.detail.range === range)
                .map((e) => ({ ms: e.duration, buckets: e.detail.buckets }))[0]""",
            arg=[DRAW_MEASURE, DAY_RANGE],
        )
        drawn = handle.json_value()
        buckets = int(drawn["buckets"])
        expected = {_minutes_with_data(end, at) for at in (chosen_at, time.time())}
        if buckets not in expected:
            raise RuntimeError(
                f"the day came back as {buckets} buckets, not {' or '.join(map(str, expected))}"
            )
        durations.append(float(drawn["ms"]))
    return {
        "day_draw_buckets": buckets,
        "day_draw_ms_p50": round(statistics.median(durations), 1),
        "day_draw_ms_max": round(max(durations), 1),
    }


def _minutes_with_data(end: datetime, now: float) -> int:
    """The one-minute buckets of the day before `now` that hold seeded readings: the 1,440
    minutes before `end`, less those the window has slid past since (a draw a minute or more
    after the seeding starts its day a minute or more into the seeded one)."""
    last_minute = int(end.timestamp()) // 60  # the first minute without readings
    first_minute = math.ceil(now - 86_400) // 60  # the minute of the window's first reading
    return last_minute - max(first_minute, last_minute - 1440)


def _choose_series(page: Page, key: str) -> None:
    """Pick a series once the device's sensors have loaded into the page's choice."""
    page.locator(f"[data-testid=series] option[value='{key}']").wait_for(state="attached")
    page.get_by_test_id("series").select_option(value=key)


def _heap_mb(cdp: CDPSession) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    usage = cdp.send("Runtime.getHeapUsage")
    return round(float(usage["usedSize"]) / 1e6, 2)


def _live_count(page: Page) -> int:
    return int(page.get_by_test_id("live-count").inner_text().replace(",", "") or 0)


def _live_heap(page: Page, cdp: CDPSession, stack: ConsoleStack, args: argparse.Namespace) -> dict[str, Any]:
    """The 100 Hz IMU on a live chart for `--minutes`; the heap at `--first-heap-s` and at the end."""
    page.goto(f"{stack.url}#/devices/{LIVE_DEVICE}")
    page.reload()
    _choose_series(page, LIVE_SERIES)
    page.get_by_test_id("history-status").filter(has_text="buckets of").wait_for()
    started = time.monotonic()
    page.wait_for_function("() => Number(document.querySelector('[data-testid=live-count]').textContent) > 0")
    page.wait_for_timeout(max(0.0, args.first_heap_s - (time.monotonic() - started)) * 1000)
    first, first_count, first_at = _heap_mb(cdp), _live_count(page), time.monotonic()
    end_s = args.minutes * 60
    while (left := end_s - (time.monotonic() - started)) > 0:
        page.wait_for_timeout(min(left, 30.0) * 1000)  # the page keeps running between samples
    end, end_count = _heap_mb(cdp), _live_count(page)
    return {
        "heap_mb_1m": first,
        "heap_mb_end": end,
        "heap_ratio": round(end / first, 3),
        "heap_first_s": args.first_heap_s,
        "live_minutes": args.minutes,
        "live_points": end_count,
        "live_points_per_s": round((end_count - first_count) / (time.monotonic() - first_at), 1),
    }
