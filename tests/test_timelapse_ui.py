"""The Timelapses page in Debian's Chromium: a print on the stand-in printer is recorded (the live
page says so), rendered, and its video plays in the browser (currentTime advances)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect
from test_printer_link import PrinterEnv, penv  # noqa: F401 - a fixture
from test_timelapse import camera_running, ffmpeg  # noqa: F401 - a fixture
from test_ui import browser, chromium_path, log_in, shot  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("chromium_path", "ffmpeg")


async def test_a_print_is_recorded_live_then_plays_on_the_timelapses_page(
        browser: Browser, penv: PrinterEnv) -> None:  # noqa: F811 - the fixtures
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await log_in(page, penv.base)
    await camera_running(penv)
    printer = penv.standin.printer
    await printer.partial(gcode_state="RUNNING", layer_num=1, total_layer_num=4, mc_percent=25)
    line = page.locator("#timelapse-link")
    await expect(line).to_have_text("Timelapse: recording, 1 frame", timeout=15_000)
    await printer.partial(layer_num=2, mc_percent=50)
    await expect(line).to_have_text("Timelapse: recording, 2 frames")
    await shot(page, "timelapse-live")
    for layer in (3, 4):
        await printer.partial(layer_num=layer, mc_percent=layer * 25)
        await expect(line).to_have_text(f"Timelapse: recording, {layer} frames")
    await printer.partial(gcode_state="FINISH", mc_percent=100)
    await expect(page.locator("#timelapse-line")).to_be_hidden(timeout=60_000)  # rendered

    await page.get_by_role("link", name="Timelapses").click()
    item = page.locator("#timelapses li").first
    await expect(item).to_have_attribute("data-state", "ready")
    await expect(item.locator(".state")).to_have_text("ready")
    await expect(item).to_contain_text("stand-in benchy.3mf")
    await expect(item.locator("img")).to_be_visible()
    assert await item.locator("img").evaluate("img => img.complete && img.naturalWidth") == 640
    await expect(item.get_by_role("link", name="Download")).to_have_attribute(
        "href", re.compile(r"/api/timelapses/\d+/video$"))
    await expect(page.locator("#space")).to_contain_text("timelapse_max_bytes")
    await item.get_by_role("button", name="Play").click()
    video = page.locator("#player")
    await expect(video).to_be_visible()
    # The browser decodes the H.264 and plays it: its clock moves past the first frame.
    await page.wait_for_function(
        "() => { const v = document.getElementById('player'); return v.currentTime > 0.1; }",
        timeout=20_000)
    assert await video.evaluate("v => v.error") is None
    duration = await video.evaluate("v => v.duration")
    assert duration == pytest.approx((4 + 30) / 30, abs=0.1)
    await shot(page, "timelapses")

    phone = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    await phone.context.add_cookies(await page.context.cookies())
    await phone.goto(f"{penv.base}/timelapses")
    await expect(phone.locator("#timelapses li")).to_have_count(1)
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the Timelapses page scrolls sideways on a phone"
    await shot(phone, "timelapses-phone")

    page.on("dialog", lambda dialog: dialog.accept())
    await item.get_by_role("button", name="Delete").click()
    await expect(page.locator("#timelapses li")).to_have_count(0)
    await expect(page.locator("#timelapses-empty")).to_be_visible()
    assert errors == []
