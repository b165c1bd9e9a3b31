"""A fleet of 1,000 devices stays fluid: the list draws only what the viewport shows.

Runs after test_console.py (same stack): the devices it adds would change what those tests see.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest
from playwright.sync_api import Page, expect

from sensormesh_core.storage.registry import create_device
from tests.console.conftest import ConsoleStack, sign_in

# The first test also waits for `sensormesh up` (up to 240 s, tests/console/conftest.py).
pytestmark = pytest.mark.timeout(600)

EXTRA = 1000


async def _add_devices(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for i in range(EXTRA):
            await create_device(conn, f"fleet-{i:04d}", labels={"rack": f"r{i % 40}"})
    finally:
        await conn.close()


def test_a_thousand_devices_scroll_with_a_screenful_of_rows(page: Page, console_stack: ConsoleStack) -> None:
    # Playwright's sync API runs an event loop in this thread: the database work gets its own.
    with ThreadPoolExecutor(1) as worker:
        worker.submit(asyncio.run, _add_devices(console_stack.database_url)).result()
    sign_in(page, console_stack, console_stack.admin_key)
    expect(page.get_by_test_id("fleet-count")).to_contain_text(f"{EXTRA + 3} devices")
    rows = page.get_by_test_id("device-row")
    drawn = rows.count()
    assert 0 < drawn <= 40, f"{drawn} rows drawn for {EXTRA + 3} devices"

    # Scroll through the whole list, a step per animation frame, and time the frames.
    frame_ms = page.get_by_test_id("virtual-list").evaluate(
        """async (list) => {
            const times = [];
            let last = performance.now();
            for (let top = 0; top <= list.scrollHeight; top += 400) {
                list.scrollTop = top;
                await new Promise(requestAnimationFrame);
                const now = performance.now();
                times.push(now - last);
                last = now;
            }
            times.sort((a, b) => a - b);
            return times[Math.floor(times.length / 2)];
        }"""
    )
    print(f"median frame while scrolling {EXTRA + 3} devices: {frame_ms:.1f} ms")
    expect(rows.filter(has_text="vibration-pi")).to_have_count(1)
    assert rows.count() <= 40
    assert frame_ms < 100, f"median frame {frame_ms:.1f} ms while scrolling"

    page.get_by_label("Search devices").fill("rack=r7 fleet-09")
    expect(rows).to_have_count(2)  # fleet-0927 and fleet-0967, scrolled far down a moment ago
