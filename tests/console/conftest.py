"""The web console in a real browser against the real stack.

One `sensormesh up` (free ports, its own data folder, simulated devices) for this package's
tests, stopped when they end; Playwright drives Debian's headless Chromium (`/usr/bin/chromium`, which
`make setup` installs: Playwright's own browser download is not used). A failed test
leaves a screenshot of its page in the pytest folder, named for the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserType, Page, Playwright, expect, sync_playwright

from tests.sensormesh_cli.stack.up_process import READY_LINE, Ports, UpProcess

CHROMIUM = Path("/usr/bin/chromium")
# A page waits this long for what it expects (Playwright's default is 5 s): the suite runs these
# on a busy two-core CI machine beside a whole stack.
expect.set_options(timeout=15_000)
# What `sensormesh up` waits for before it prints its banner: the database, the services, the
# first readings of every simulated device. A cold first start on a busy CI machine is slow.
UP_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class ConsoleStack:
    url: str  # the console, on Envoy's listener
    admin_key: str
    viewer_key: str
    database_url: str
    ports: Ports  # the stack's own: its services, for another Envoy in front of them (test_sso.py)


def _create_key(url: str, admin_key: str, name: str, role: str) -> str:
    response = httpx.post(
        f"{url}v1/apiKeys",
        headers={"authorization": f"Bearer {admin_key}"},
        json={"apiKey": {"name": name, "role": role}},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["key"])


@pytest.fixture(scope="package")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    cwd = tmp_path_factory.mktemp("console-stack")
    ports = Ports()
    up = UpProcess(cwd, ports.flags())
    try:
        output = up.wait_for(READY_LINE, UP_TIMEOUT_S)
        url = f"http://127.0.0.1:{ports.http}/"
        admin_key = (cwd / ".sensormesh" / "admin.key").read_text().strip()
        viewer_key = _create_key(url, admin_key, "console-viewer", "ROLE_VIEWER")
        database = re.search(r"postgresql://\S+", output)
        assert database, output
        yield ConsoleStack(url, admin_key, viewer_key, database.group(0), ports)
    finally:
        up.close()


# pytest-playwright keeps Playwright (whose sync API leaves an event loop marked running in the
# test thread) and the browser for the whole session; the rest of the suite, asyncio tests
# included, must not run beside them. These overrides end both with this package's tests.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)  # type: ignore[no-any-return]


@pytest.fixture(scope="package")
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    browser = browser_type.launch(**browser_type_launch_args)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch arguments, with Debian's Chromium instead of Playwright's download."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs it (apt-get install chromium, as root)")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": ["--no-sandbox"]}


@pytest.fixture(scope="package")
def browser_context_args() -> dict[str, Any]:
    """Every page's context: one desktop size (the plugin's own asks Playwright for devices)."""
    return {"viewport": {"width": 1280, "height": 900}}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(
    page: Page, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Page]:
    """pytest-playwright's page; after a failed test, a screenshot of it in the pytest folder."""
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        folder = tmp_path_factory.getbasetemp() / "console-screenshots"
        folder.mkdir(exist_ok=True)
        path = folder / f"{request.node.name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failed page: {path}")  # shown with the failure's captured output


def sign_in(page: Page, stack: ConsoleStack, key: str) -> None:
    page.goto(stack.url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("caller")).to_be_visible()


def save_screenshot(page: Page, to: Path) -> None:
    """Where the README's screenshot comes from (SENSORMESH_README_SCREENSHOT)."""
    to.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(to), full_page=True)
