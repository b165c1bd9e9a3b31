"""A device's cameras in the console: the newest frame, a live view that follows new frames
(WatchFrames with the images), and a strip of frames on the history range's axis.

`sensormesh up`'s greenhouse-pi has a simulated camera, greenhouse-cam, a frame every 5 s.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import ConsoleStack, save_screenshot, sign_in

# The first test also waits for `sensormesh up` (up to 240 s, tests/console/conftest.py).
pytestmark = pytest.mark.timeout(600)

BLOB = re.compile(r"^blob:")  # the images are the frames' bytes (gRPC-Web) as object URLs


def test_the_live_view_shows_each_new_frame_and_the_strip_the_range(
    page: Page, console_stack: ConsoleStack
) -> None:
    sign_in(page, console_stack, console_stack.viewer_key)
    page.goto(f"{console_stack.url}#/devices/greenhouse-pi")
    camera = page.get_by_test_id("camera").filter(has_text="greenhouse-cam")
    image = camera.get_by_test_id("camera-image")
    # The camera's first frame may come after the page opened: the page asks again within 10 s.
    expect(image).to_have_attribute("src", BLOB, timeout=30_000)
    first = image.get_attribute("src")
    # A frame every 5 s: a new one arrives over the live feed and replaces the image (and its URL).
    expect(image).not_to_have_attribute("src", first or "", timeout=15_000)
    assert (image.get_attribute("src") or "").startswith("blob:")
    # The replaced image's URL was revoked: an open page holds the newest image, not every one.
    assert page.evaluate("url => fetch(url).then(() => 'held', () => 'revoked')", first) == "revoked"
    # The strip holds frames of the 15 minutes (the stack is young: at least one), placed on the
    # axis; their images are fetched once it is on screen (below the chart: scrolled to), and
    # choosing one shows it instead of the live view.
    expect(camera.get_by_test_id("strip-status")).to_contain_text("frames over 15 min")
    camera.get_by_test_id("frame-strip").scroll_into_view_if_needed()
    thumbs = camera.get_by_test_id("frame-thumb")
    expect(thumbs.first.locator("img")).to_have_attribute("src", BLOB)
    assert 1 <= thumbs.count() <= 24
    chosen = thumbs.first.locator("img").get_attribute("src")
    thumbs.first.click()
    expect(image).to_have_attribute("src", chosen or "")
    expect(camera.locator("figcaption")).to_contain_text("From the strip")
    camera.get_by_label("Live", exact=True).check()
    expect(camera.locator("figcaption")).to_contain_text("Live")
    if screenshot := os.environ.get("SENSORMESH_CAMERAS_SCREENSHOT"):
        # The docs' picture: a strip with a few minutes of frames on it (one per 37.5 s slot).
        deadline = time.monotonic() + 240
        while thumbs.count() < 6 and time.monotonic() < deadline:
            page.wait_for_timeout(20_000)
            page.get_by_test_id("range").select_option(label="1 h")
            page.get_by_test_id("range").select_option(label="15 min")
            expect(camera.get_by_test_id("strip-status")).to_contain_text("frames over 15 min")
        expect(thumbs.last.locator("img")).to_have_attribute("src", BLOB)
        save_screenshot(page, Path(screenshot))
