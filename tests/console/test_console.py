"""The console's first pages in headless Chromium against `sensormesh up`: sign-in, the fleet,
a device's latest values and live chart, history from the rollups, and what a viewer sees."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import ConsoleStack, save_screenshot, sign_in

# The first test also waits for `sensormesh up` (up to 240 s, tests/console/conftest.py).
pytestmark = pytest.mark.timeout(600)

SIMULATED = ("greenhouse-pi", "vibration-pi", "soil-node")


def _count(page: Page, test_id: str) -> int:
    return int(page.get_by_test_id(test_id).inner_text())


def test_a_wrong_key_gets_a_clear_message_and_no_console(page: Page, console_stack: ConsoleStack) -> None:
    page.goto(console_stack.url)
    page.get_by_label("API key").fill("smak_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That key was not accepted")
    expect(page.get_by_test_id("caller")).to_have_count(0)


def test_signing_in_shows_the_simulated_devices_online(page: Page, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack, console_stack.admin_key)
    expect(page.get_by_test_id("caller")).to_contain_text("admin")
    rows = page.get_by_test_id("device-row")
    for device_id in SIMULATED:
        expect(rows.filter(has_text=device_id)).to_contain_text("online")
    page.get_by_label("Search devices").fill("vibration")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("vibration-pi")
    # The key stays in the tab: a reload signs in again without asking.
    page.reload()
    expect(page.get_by_test_id("caller")).to_be_visible()


def test_a_device_shows_latest_values_and_a_live_chart_that_grows(
    page: Page, console_stack: ConsoleStack
) -> None:
    sign_in(page, console_stack, console_stack.admin_key)
    page.get_by_test_id("device-row").filter(has_text="greenhouse-pi").click()
    expect(page).to_have_url(re.compile(r"#/devices/greenhouse-pi$"))
    expect(page.get_by_test_id("latest")).to_contain_text("temperature")
    page.get_by_test_id("series").select_option(value="sim-environment/temperature")
    expect(page.get_by_test_id("history-status")).to_contain_text("buckets of 60 s over 15 min")
    # greenhouse-pi's environment sensor reads every second: the live tail grows.
    expect(page.get_by_test_id("live-count")).not_to_have_text("0", timeout=15_000)
    first = _count(page, "point-count")
    expect(page.get_by_test_id("point-count")).not_to_have_text(str(first), timeout=15_000)
    assert _count(page, "point-count") > first
    assert page.locator("[data-testid=live-chart] canvas").count() == 1
    if screenshot := os.environ.get("SENSORMESH_README_SCREENSHOT"):
        # The README's picture: half a minute of live tail after the history.
        expect(page.get_by_test_id("live-count")).to_have_text(re.compile(r"^[3-9]\d$"), timeout=60_000)
        save_screenshot(page, Path(screenshot))


def test_a_range_change_loads_that_range_from_the_rollups(page: Page, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack, console_stack.admin_key)
    page.goto(f"{console_stack.url}#/devices/greenhouse-pi")
    expect(page.get_by_test_id("history-status")).to_contain_text("over 15 min")
    page.get_by_test_id("range").select_option(label="24 h")
    status = page.get_by_test_id("history-status")
    expect(status).to_contain_text(re.compile(r"[1-9]\d* buckets of 60 s over 24 h"))


def test_an_operator_sends_an_advertised_command_and_watches_it_succeed(
    page: Page, console_stack: ConsoleStack
) -> None:
    sign_in(page, console_stack, console_stack.admin_key)
    page.goto(f"{console_stack.url}#/devices/greenhouse-pi")
    commands = page.get_by_test_id("commands")
    commands.get_by_role("button", name="ping", exact=True).click()
    # QUEUED, SENT, DELIVERED, SUCCEEDED: the agent answers a ping at once.
    newest = page.get_by_test_id("recent-commands").locator("tbody tr").first
    expect(newest).to_contain_text("ping")
    expect(newest.get_by_test_id("command-state")).to_have_text("succeeded", timeout=20_000)


def test_a_commands_parameters_are_filled_in_a_form_and_a_wrong_one_is_named(
    page: Page, console_stack: ConsoleStack
) -> None:
    sign_in(page, console_stack, console_stack.admin_key)
    page.goto(f"{console_stack.url}#/devices/greenhouse-pi")
    commands = page.get_by_test_id("commands")
    # Checked as the device declared it (seconds at least 0.001) before anything is sent.
    commands.get_by_role("button", name="set_interval").click()
    form = page.get_by_test_id("command-form")
    form.locator("select[name=input]").select_option(index=1)
    form.locator("input[name=seconds]").fill("0")
    form.get_by_test_id("submit-command").click()
    expect(commands.get_by_role("alert")).to_have_text("seconds: must be at least 0.001")
    form.get_by_role("button", name="Cancel").click()
    expect(form).to_have_count(0)
    # read_now's input is one of the polled inputs the agent named: a select.
    commands.get_by_role("button", name="read_now").click()
    form.locator("select[name=input]").select_option(index=1)
    form.get_by_test_id("submit-command").click()
    newest = page.get_by_test_id("recent-commands").locator("tbody tr").first
    expect(newest).to_contain_text("read_now")
    expect(newest.get_by_test_id("command-state")).to_have_text("succeeded", timeout=20_000)


def test_an_operator_acknowledges_an_alert_a_viewer_cannot(page: Page, console_stack: ConsoleStack) -> None:
    # A rule that greenhouse-pi's next temperature (every second) breaks.
    rule = {
        "ruleId": "console-always",
        "severity": "ALERT_SEVERITY_MINOR",
        "devices": {"deviceIds": ["greenhouse-pi"]},
        "sensors": ["sim-environment"],
        "threshold": {"quantity": "temperature", "above": -100},
    }
    answer = httpx.post(
        f"{console_stack.url}v1/alertRules",
        headers={"authorization": f"Bearer {console_stack.admin_key}"},
        json=rule,  # the body is the rule itself (body: "alert_rule")
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    sign_in(page, console_stack, console_stack.viewer_key)
    page.get_by_role("link", name="Alerts").click()
    row = page.get_by_test_id("alerts").locator("tr", has_text="console-always").first
    expect(row).to_contain_text("active unack", timeout=30_000)
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, console_stack, console_stack.admin_key)
    page.get_by_role("link", name="Alerts").click()
    row.get_by_role("button", name="Acknowledge").click()
    expect(row).to_contain_text("active ack")


def test_an_admin_makes_a_key_revokes_it_and_finds_both_in_the_audit_log(
    page: Page, console_stack: ConsoleStack
) -> None:
    sign_in(page, console_stack, console_stack.admin_key)
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Name").fill("made-in-console")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("new-key")).to_contain_text("smak_")
    row = page.get_by_test_id("keys").locator("tr", has_text="made-in-console")
    expect(row).to_contain_text("viewer")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    page.get_by_role("link", name="Audit").click()
    audit = page.get_by_test_id("audit")
    expect(audit).to_contain_text("CreateApiKey")
    expect(audit).to_contain_text("RevokeApiKey")


def test_a_viewer_sees_no_button_it_may_not_use(page: Page, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack, console_stack.viewer_key)
    expect(page.get_by_test_id("caller")).to_contain_text("key:console-viewer · viewer")
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    expect(page.get_by_role("link", name="Audit")).to_have_count(0)
    rows = page.get_by_test_id("device-row")
    for device_id in SIMULATED:
        expect(rows.filter(has_text=device_id)).to_have_count(1)
    page.goto(f"{console_stack.url}#/devices/greenhouse-pi")
    expect(page.get_by_test_id("latest")).to_contain_text("temperature")
    commands = page.get_by_test_id("commands")
    expect(commands).to_contain_text("Viewers see commands")
    # The list of commands is there (the operator's ping above), the buttons are not.
    expect(page.get_by_test_id("recent-commands")).to_contain_text("ping")
    expect(page.get_by_role("button")).to_have_text(["Sign out"])
