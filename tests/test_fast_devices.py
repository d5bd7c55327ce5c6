"""GET /devices before Quart (appliance.web.fast): Quart's own answer, or Quart answers."""

from __future__ import annotations

import httpx
from conftest import Env
from helpers import add_token, wait_for


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "server")}
    return response.status_code, headers, response.content


async def test_a_logged_in_get_is_answered_here_exactly_as_quart_answers_it(logged_in: Env) -> None:
    fast = logged_in.app.fast_devices
    await wait_for(lambda: logged_in.app.services.presence.devices(), what="beacons in range")
    before = fast.answered
    here = await logged_in.client.get(f"{logged_in.base}/devices")
    assert fast.answered == before + 1
    # A query string sends it on to Quart, whose route ignores it: the same answer.
    quart = await logged_in.client.get(f"{logged_in.base}/devices?from=quart")
    assert fast.answered == before + 1
    assert comparable(here) == comparable(quart)
    assert here.json()["discovered"], "the beacons are in the answer"


async def test_anything_else_goes_to_quart_and_an_ended_session_is_refused_at_once(
        logged_in: Env) -> None:
    fast = logged_in.app.fast_devices
    base = logged_in.base
    token = await add_token(logged_in.data_dir)
    async with httpx.AsyncClient(timeout=10) as anonymous:
        assert (await anonymous.get(f"{base}/devices")).status_code == 401
        forged = await anonymous.get(f"{base}/devices",
                                     headers={"Cookie": "appliance_session=forged.value"})
        assert forged.status_code == 401
        by_token = await anonymous.get(f"{base}/devices",
                                       headers={"Authorization": f"Bearer {token}"})
        assert by_token.status_code == 200  # Quart's guard takes tokens
    cookie = logged_in.cookie
    assert (await logged_in.client.head(f"{base}/devices")).status_code == 200
    before = fast.answered
    assert (await logged_in.client.delete(f"{base}/api/session")).status_code == 200
    async with httpx.AsyncClient(timeout=10) as after_logout:
        ended = await after_logout.get(f"{base}/devices", headers={"Cookie": cookie})
    assert ended.status_code == 401 and ended.json()["error"] == "unauthorized"
    assert fast.answered == before
