"""The fleet's battery and signal columns, sorted by ListDevices' order_by, and a device page's
lowest battery and weakest signal.

Runs after test_fleet_scale.py (same stack): the device it adds would change that test's count.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import ConsoleStack, sign_in

# The first test also waits for `sensormesh up` (up to 240 s, tests/console/conftest.py).
pytestmark = pytest.mark.timeout(600)

LOW = "weak-tag"  # after every other device in id order


def _write_low_battery_device(stack: ConsoleStack) -> None:
    """A direct device whose one wireless sensor reports an empty battery at -97 dBm (0 %: below
    greenhouse-pi's simulated battery, which drains to 0.0 only for seconds every two hours)."""
    admin = {"authorization": f"Bearer {stack.admin_key}"}
    created = httpx.post(
        f"{stack.url}v1/devices",
        headers=admin,
        json={"deviceId": LOW, "type": "DEVICE_TYPE_DIRECT"},
        timeout=10,
    )
    assert created.status_code == 200, created.text
    reading = {
        "sensor": "ble:tag",
        "sampleTime": datetime.now(UTC).isoformat(),
        "linkHealth": {"batteryLevelPercent": 0, "signalStrengthDbm": -97},
    }
    written = httpx.post(
        f"{stack.url}v1/devices/{LOW}/readings:write",
        headers={"authorization": f"Bearer {created.json()['token']}"},
        json={"readings": [reading]},
        timeout=10,
    )
    assert written.status_code == 200, written.text


def test_the_fleet_shows_battery_and_signal_and_sorts_by_lowest_battery(
    page: Page, console_stack: ConsoleStack
) -> None:
    _write_low_battery_device(console_stack)
    sign_in(page, console_stack, console_stack.viewer_key)
    rows = page.get_by_test_id("device-row")
    page.get_by_test_id("fleet-order").select_option(label="Lowest battery")
    first = rows.first
    expect(first).to_contain_text(LOW)
    # Low and weak are said in words as well as colour.
    expect(first.get_by_test_id("battery")).to_have_text("0 % ⚠ low")
    expect(first.get_by_test_id("signal")).to_have_text("-97 dBm ⚠ weak")
    # Then greenhouse-pi, whose simulated BLE thermometer reports its battery (draining over two
    # hours from full), before the 1,000 devices of test_fleet_scale.py, which report none.
    expect(rows.nth(1)).to_contain_text("greenhouse-pi")
    expect(rows.nth(1).get_by_test_id("battery")).to_contain_text(" %")
    expect(rows.nth(2).get_by_test_id("battery")).to_have_text("–")
    page.get_by_test_id("fleet-order").select_option(label="Device id")
    expect(rows.first).not_to_contain_text(LOW)


def test_a_device_page_shows_its_lowest_battery_and_weakest_signal(
    page: Page, console_stack: ConsoleStack
) -> None:
    sign_in(page, console_stack, console_stack.viewer_key)
    page.goto(f"{console_stack.url}#/devices/{LOW}")
    expect(page.get_by_test_id("link-health")).to_contain_text("Lowest battery 0 % ⚠ low")
    expect(page.get_by_test_id("link-health")).to_contain_text("weakest signal -97 dBm ⚠ weak")
