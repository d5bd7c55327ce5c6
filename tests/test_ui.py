"""The dashboard in a real browser: Playwright driving Debian's Chromium against the real app.

Screenshots land in build/screenshots/ as test artifacts.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PASSWORD, add_token, add_user, make_png, make_settings, running_server
from playwright.async_api import Browser, Page, async_playwright, expect

from appliance.app import create_app
from appliance_sim.air import beacon_address
from appliance_sim.radio import VirtualRadio

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent.parent / "build" / "screenshots"
# As root and offline: no sandbox (root), and nothing phoning home (the network is closed here).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: sudo apt-get install chromium")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium_path, headless=True,
                                            args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    await add_user(tmp_path)
    app = create_app(make_settings(tmp_path), radio=VirtualRadio(2, seed=3))
    async with running_server(app) as base:
        yield base, tmp_path


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def log_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/login?next=/")
    await page.get_by_label("User name").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#connection")).to_have_text("Live")


async def test_login_live_frame_chart_and_pairing(browser: Browser, site: tuple[str, Path]) -> None:
    base, data_dir = site
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[Any] = []
    page.on("pageerror", lambda exc: errors.append(exc))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    wire_frames: list[bytes] = []  # what the page's /frames sockets received

    def on_websocket(ws: Any) -> None:
        if ws.url.endswith("/frames"):
            ws.on("framereceived", lambda payload: wire_frames.append(payload))

    page.on("websocket", on_websocket)

    await page.goto(f"{base}/login")
    await shot(page, "01-login")
    await page.get_by_label("User name").fill("alice")
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    errors.clear()  # the browser logs the 401 of that wrong password as an error
    await log_in(page, base)

    token = await add_token(data_dir)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as publisher:
        for temperature, humidity in ((21.0, 40.0), (22.5, 42.0), (23.0, 45.0)):
            await publisher.post(f"{base}/api/temphum", headers=auth,
                                 json={"temperature": temperature, "humidity": humidity})
        await publisher.post(f"{base}/api/status", headers=auth, json={"status": "printing 42%"})
        frame = make_png(320, 180, (40, 120, 200))
        await publisher.post(f"{base}/api/image", headers=auth, content=frame)

    image = page.locator("#frame")
    await expect(image).to_be_visible()
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 320
    assert any(isinstance(f, bytes) and f.endswith(frame) for f in wire_frames), \
        "the dashboard took its frame from /frames"
    await expect(page.locator("#status")).to_have_text("printing 42%")
    await expect(page.locator("#temperature")).to_have_text("23.0")
    await expect(page.locator("#chart polyline.temp")).to_have_count(1)
    points = await page.locator("#chart polyline.temp").get_attribute("points")
    assert points is not None and len(points.split()) == 3  # the three live readings of today

    beacon = beacon_address(1)
    row = page.locator(f"#presence tr[data-id='{beacon}']")
    await expect(row).to_be_visible()
    await expect(row.locator("td.area")).to_have_text("main")  # the local radio's area
    await row.get_by_role("combobox").select_option(label="alice")
    await row.get_by_role("button", name="Pair").click()
    await expect(row).to_have_attribute("data-state", "connected")
    await expect(row.locator(".badge")).to_have_text("link", timeout=15_000)
    await expect(row.get_by_role("button", name="Unpair")).to_be_visible()
    await shot(page, "02-dashboard")

    phone = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    await phone.context.add_cookies(await page.context.cookies())
    await phone.goto(f"{base}/")
    await expect(phone.locator("#connection")).to_have_text("Live")
    await expect(phone.locator("#frame")).to_be_visible()
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    await shot(phone, "03-phone")
    assert errors == []


async def test_settings_create_token_shown_once_and_users(browser: Browser, site: tuple[str, Path]
                                                          ) -> None:
    base, _data_dir = site
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await log_in(page, base)
    await page.get_by_role("link", name="Settings").click()
    await expect(page.get_by_label("Seconds between frames")).to_have_value("10")

    await page.get_by_label("Token name").fill("printer-cam")
    await page.get_by_role("button", name="Create token").click()
    value = page.locator("#new-token-value")
    await expect(value).to_have_text(re.compile(r"^apt_[\w-]{40,}$"))
    await expect(page.locator("#tokens")).to_contain_text("printer-cam (never used)")
    token = await value.text_content()
    await shot(page, "04-settings-token")
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base}/devices", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200

    await page.reload()
    await expect(page.locator("#tokens")).to_contain_text("printer-cam")
    assert await page.locator("#new-token-value").text_content() == ""  # never shown again

    await page.get_by_label("New user name").fill("bob")
    await page.get_by_label("Password (8 characters or more)").fill("bobs password")
    await page.get_by_role("button", name="Add user").click()
    await expect(page.locator("#users")).to_contain_text("bob")
    await page.get_by_label("Seconds between frames").fill("30")
    await page.get_by_role("button", name="Save delays").click()
    await expect(page.locator("#message")).to_have_text("Delays saved.")
    await page.reload()
    await expect(page.get_by_label("Seconds between frames")).to_have_value("30")
