"""The dashboard's printer card in Chromium, against the app linked to the stand-in printer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from test_printer_link import PrinterEnv, start_env
from test_ui import browser, chromium_path, log_in, shot  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("chromium_path")


@pytest.fixture
async def penv(tmp_path: Path) -> AsyncIterator[PrinterEnv]:
    async with start_env(tmp_path) as env:
        yield env


async def test_dashboard_shows_the_printer_live_and_switches_its_light(
        browser: Browser, penv: PrinterEnv) -> None:  # noqa: F811 - the fixture
    page = await browser.new_page()
    await log_in(page, penv.base)
    card = page.locator("#printer-card")
    await expect(card).to_be_visible(timeout=20_000)
    await expect(page.locator("#printer-job")).to_have_text("stand-in benchy.3mf")
    await expect(page.locator("#frame")).to_be_visible(timeout=20_000)
    await penv.standin.printer.partial(gcode_state="RUNNING", layer_num=17, total_layer_num=230,
                                       mc_percent=42)
    await expect(page.locator("#printer-line")).to_have_text("RUNNING 42%")
    await expect(page.locator("#printer-layer")).to_have_text("17 / 230")
    await expect(page.locator("#status")).to_have_text("RUNNING 42% layer 17/230")
    light = page.locator("#printer-light")
    await expect(light).to_have_text("Switch on")
    await light.click()
    await expect(light).to_have_text("Switch off")
    await expect(light).to_have_attribute("aria-pressed", "true")
    await shot(page, "printer-card")


async def test_a_maker_links_the_printer_from_the_settings_page(
        browser: Browser, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    async with start_env(tmp_path, printer_host="", printer_serial="") as penv:
        page = await browser.new_page()
        await log_in(page, penv.base)
        await page.goto(f"{penv.base}/settings")
        setup = page.locator("#printer-setup")
        await expect(setup).to_contain_text("No printer set up")
        await page.fill("#printer-host", "127.0.0.1")
        await page.fill("#printer-serial", penv.standin.serial)
        await page.click("#printer-address-form button[type=submit]")
        await expect(setup).to_contain_text(f"127.0.0.1, serial {penv.standin.serial}")
        await page.reload()
        await expect(page.locator("#printer-host")).to_have_value("127.0.0.1")
        await page.goto(f"{penv.base}/")
        await expect(page.locator("#printer-job")).to_have_text("stand-in benchy.3mf",
                                                                timeout=20_000)
