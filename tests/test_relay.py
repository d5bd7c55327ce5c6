"""The Socket.IO relay with real python-socketio clients against the app on hypercorn."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import engineio
import httpx
import pytest
import socketio
from conftest import B1, Env
from helpers import (
    PASSWORD,
    Browser,
    add_token,
    add_user,
    close_code,
    make_jpeg_like,
    make_png,
    wait_for,
)
from websockets.asyncio.client import connect as ws_connect

from appliance.auth import accounts
from appliance.auth.sessions import WATCH_S
from appliance.relay.socket import JOIN_TIMEOUT_S, RECHECK_S, transport_max_bytes
from appliance.store.db import Database


async def connect_browser(app_env: Env, origin: str | None = None) -> Browser:
    browser = Browser()
    await browser.client.connect(app_env.base,
                                 headers={"Cookie": app_env.cookie, "Origin": origin or app_env.base},
                                 transports=["websocket"], wait_timeout=10)
    return browser


async def connect_publisher(app_env: Env, token: str) -> socketio.AsyncClient:
    publisher = socketio.AsyncClient(reconnection=False)
    await publisher.connect(app_env.base, auth={"token": token}, transports=["websocket"],
                            wait_timeout=10)
    return publisher


@pytest.fixture
async def pair(logged_in: Env) -> AsyncIterator[tuple[Env, Browser, socketio.AsyncClient]]:
    token = await add_token(logged_in.data_dir)
    browser = await connect_browser(logged_in)
    publisher = await connect_publisher(logged_in, token)
    yield logged_in, browser, publisher
    await publisher.disconnect()
    await browser.client.disconnect()


async def count(app_env: Env, table: str) -> int:
    db = await Database.open(app_env.data_dir / "appliance.db")
    row = await db.fetch_one(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - a fixed table name
    await db.close()
    return int(row[0]) if row else 0


async def test_binary_frame_reaches_the_browser_as_binary(pair: tuple[Env, Browser, Any]) -> None:
    app_env, browser, publisher = pair
    png = make_png()
    ack = await publisher.call("image", png, timeout=10)
    assert ack == {"ok": True}
    await wait_for(lambda: browser.of("image2v"), what="image2v")
    [frame] = browser.of("image2v")
    assert frame["image"] == png and isinstance(frame["image"], bytes)
    assert frame["mime"] == "image/png" and frame["timestamp"].endswith("Z")
    await wait_for(lambda: stored(app_env, 1), what="the frame on the SD card")


async def stored(app_env: Env, frames: int) -> bool:
    return await count(app_env, "images") == frames


async def test_every_frame_is_relayed_but_one_per_image_delay_is_stored(
    pair: tuple[Env, Browser, Any]
) -> None:
    app_env, browser, publisher = pair
    frames = [make_png(rgb=(i, 0, 0)) for i in range(5)]
    for frame in frames:  # within one image_delay (10 s by default) of each other
        assert await publisher.call("image", frame, timeout=10) == {"ok": True}
    await wait_for(lambda: len(browser.of("image2v")) == 5, what="all five frames relayed")
    assert [f["image"] for f in browser.of("image2v")] == frames
    await wait_for(lambda: stored(app_env, 1), what="the first frame stored")
    app_env.clock.advance(10)  # image_delay later
    assert await publisher.call("image", frames[0], timeout=10) == {"ok": True}
    await wait_for(lambda: stored(app_env, 2), what="a second frame stored")
    relay = (await app_env.client.get(f"{app_env.base}/status")).json()["relay"]
    assert relay["framesIn"] == 6 and relay["framesStored"] == 2 and relay["storeErrors"] == 0


async def test_reference_base64_frames_are_still_accepted(pair: tuple[Env, Browser, Any]) -> None:
    _env, browser, publisher = pair
    jpeg = make_jpeg_like(5000)
    ack = await publisher.call("image", {"image": base64.b64encode(jpeg).decode()}, timeout=10)
    assert ack == {"ok": True}
    await wait_for(lambda: browser.of("image2v"), what="image2v")
    assert browser.of("image2v")[0]["image"] == jpeg
    assert browser.of("image2v")[0]["mime"] == "image/jpeg"


async def test_readings_and_status_reach_the_browser(pair: tuple[Env, Browser, Any]) -> None:
    app_env, browser, publisher = pair
    assert await publisher.call("temphum", {"temperature": 21.5, "humidity": 40}) == {"ok": True}
    assert await publisher.call("status", {"status": "printing 42%"}) == {"ok": True}
    await wait_for(lambda: browser.of("status2v"), what="status2v")
    [reading] = browser.of("temphum2v")
    assert (reading["temperature"], reading["humidity"]) == (21.5, 40.0)
    assert browser.of("status2v")[0]["status"] == "printing 42%"
    assert (await count(app_env, "temphum"), await count(app_env, "status")) == (1, 1)
    history = await app_env.client.get(f"{app_env.base}/api/temphum",
                                   params={"date": reading["timestamp"][:10]})
    assert [r["temperature"] for r in history.json()] == [21.5]


BAD_INPUTS = [
    ("image", b"GIF89a not allowed", "not_an_image"),
    ("image", {"image": "%%% not base64 %%%"}, "bad_base64"),
    ("image", {"image": base64.b64encode(b"plain text").decode()}, "not_an_image"),
    ("image", 12, "invalid"),
    ("temphum", {"temperature": "hot", "humidity": 40}, "invalid"),
    ("temphum", {"temperature": 21, "humidity": 140}, "invalid"),
    ("temphum", {"temperature": float("nan"), "humidity": 40}, "invalid"),
    ("temphum", {"temperature": True, "humidity": 40}, "invalid"),
    ("temphum", {"temperature": 10**400, "humidity": 40}, "invalid"),  # an int no float holds
    ("temphum", {"temperature": 21, "humidity": -(10**400)}, "invalid"),
    ("temphum", [21, 40], "invalid"),
    ("status", {"status": ""}, "invalid"),
    ("status", {"status": "x" * 201}, "invalid"),
    ("status", {"status": "two\nlines"}, "invalid"),
    ("status", "printing", "invalid"),
]


@pytest.mark.parametrize("app_env", [{"beacons": 0}], indirect=True)  # no presence2v among the events
@pytest.mark.parametrize(("event", "payload", "error"), BAD_INPUTS)
async def test_bad_input_gets_an_error_ack_and_nothing_is_stored_or_relayed(
    pair: tuple[Env, Browser, Any], event: str, payload: Any, error: str
) -> None:
    app_env, browser, publisher = pair
    ack = await publisher.call(event, payload, timeout=10)
    assert ack["ok"] is False and ack["error"] == error and ack["message"]
    # The connection is kept: a good status after the bad input is the first thing relayed.
    assert await publisher.call("status", {"status": "still here"}) == {"ok": True}
    await wait_for(lambda: browser.of("status2v"), what="the good status")
    assert [name for name, _ in browser.events if name != "devices2v"] == ["status2v"]
    assert await count(app_env, "images") == 0
    assert await count(app_env, "temphum") == 0
    assert await count(app_env, "status") == 1


async def test_oversized_frame_gets_a_clear_error_not_a_dropped_connection(
    pair: tuple[Env, Browser, Any]
) -> None:
    app_env, _browser, publisher = pair
    limit = app_env.app.services.settings.image_max_bytes
    ack = await publisher.call("image", make_jpeg_like(limit + 1), timeout=20)
    assert ack["error"] == "too_large" and str(limit) in ack["message"]
    big_b64 = base64.b64encode(make_jpeg_like(limit + 1)).decode()
    assert (await publisher.call("image", {"image": big_b64}, timeout=20))["error"] == "too_large"
    assert publisher.connected
    assert await count(app_env, "images") == 0


async def test_a_frame_far_over_the_limit_gets_an_error_ack_and_the_publisher_stays(
    pair: tuple[Env, Browser, Any]
) -> None:
    app_env, browser, publisher = pair
    for size in (4_500_000, 9_000_000):  # beyond the transport's headroom, as bytes and as base64
        ack = await publisher.call("image", make_jpeg_like(size), timeout=30)
        assert ack["ok"] is False and ack["error"] == "too_large", ack
        assert "image_max_bytes" in ack["message"]
        big_b64 = base64.b64encode(make_jpeg_like(size)).decode()
        ack = await publisher.call("image", {"image": big_b64}, timeout=30)
        assert ack["error"] == "too_large", ack
    assert publisher.connected
    assert await publisher.call("status", {"status": "still here"}) == {"ok": True}
    await wait_for(lambda: browser.of("status2v"), what="the status after the big frames")
    assert await count(app_env, "images") == 0


async def test_a_message_beyond_the_transport_limit_closes_with_1009_message_too_big(
    logged_in: Env
) -> None:
    token = await add_token(logged_in.data_dir)
    limit = transport_max_bytes(logged_in.app.services.settings)
    url = logged_in.base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with ws_connect(url, max_size=None) as ws:
        assert str(await ws.recv()).startswith("0")  # Engine.IO open
        await ws.send('40{"token": "%s"}' % token)  # noqa: UP031 - the wire format
        assert str(await ws.recv()).startswith("40")  # joined as a publisher
        await ws.send(b"\x04" + make_jpeg_like(limit + 1))
        assert await close_code(ws) == 1009


async def test_undecodable_packets_get_a_bad_json_ack_and_no_traceback(
    logged_in: Env, caplog: pytest.LogCaptureFixture
) -> None:
    token = await add_token(logged_in.data_dir)
    url = logged_in.base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with ws_connect(url) as ws:
        assert str(await ws.recv()).startswith("0")
        await ws.send('40{"token": "%s"}' % token)  # noqa: UP031 - the wire format
        assert str(await ws.recv()).startswith("40")
        for bad in ('427["status", {"status": ', "9nonsense", '5x-["image"]', "42" + "9" * 150):
            await ws.send(bad)
        await ws.send('428["status", {"status": "still here"}]')
        answers = [str(await ws.recv())]
        while answers[-1] != '438[{"ok":true}]':  # the good status's ack: the connection stayed
            answers.append(str(await ws.recv()))
    assert answers[0].startswith("437[") and '"error":"bad_json"' in answers[0]
    assert "Traceback" not in caplog.text
    assert len([r for r in caplog.records if "could not be handled" in r.getMessage()]) <= 1


@pytest.mark.parametrize("junk", ["", "x-not-a-packet", "\u00e9"])
async def test_a_message_that_is_no_engineio_packet_closes_with_1002_and_no_traceback(
        logged_in: Env, caplog: pytest.LogCaptureFixture, junk: str) -> None:
    url = logged_in.base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with ws_connect(url) as ws:
        assert str(await ws.recv()).startswith("0")
        await ws.send(junk)
        assert await close_code(ws) == 1002
    assert "Traceback" not in caplog.text
    assert (await logged_in.client.get(f"{logged_in.base}/health")).status_code == 200


async def test_browser_gets_the_latest_state_when_it_connects(logged_in: Env) -> None:
    app_env = logged_in
    token = await add_token(app_env.data_dir)
    publisher = await connect_publisher(app_env, token)
    png = make_png(rgb=(1, 2, 3))
    await publisher.call("image", png)
    await publisher.call("temphum", {"temperature": 19.0, "humidity": 55.5})
    await publisher.call("status", {"status": "idle"})
    await wait_for(lambda: app_env.device(B1), what="a beacon")
    browser = await connect_browser(app_env)
    await wait_for(lambda: len({name for name, _ in browser.events}) == 4, what="four greetings")
    assert browser.of("image2v")[0]["image"] == png
    assert browser.of("temphum2v")[0]["humidity"] == 55.5
    assert browser.of("status2v")[0]["status"] == "idle"
    assert B1 in [d["id"] for d in browser.of("devices2v")[0]["discovered"]]
    await browser.client.disconnect()
    await publisher.disconnect()


async def test_presence_changes_are_pushed(logged_in: Env) -> None:
    app_env = logged_in
    browser = await connect_browser(app_env)
    await wait_for(lambda: app_env.device(B1), what="a beacon")
    await app_env.client.post(f"{app_env.base}/pair", json={"deviceId": B1, "userId": "u", "userName": "a"})
    await wait_for(lambda: any(p["id"] == B1 and p["isConnected"] for p in browser.of("presence2v")),
                   within=10, what="presence2v with the GATT link up")
    pushed = [p for p in browser.of("presence2v") if p["id"] == B1][-1]
    rest = await app_env.device(B1)
    assert rest is not None and set(pushed) == set(rest)
    assert pushed["isPaired"] and pushed["userName"] == "a"
    await browser.client.disconnect()


@pytest.mark.parametrize("how", ["no cookie", "bad token", "foreign origin", "publisher origin"])
async def test_unauthenticated_and_foreign_connects_are_refused(logged_in: Env, how: str) -> None:
    app_env = logged_in
    client = socketio.AsyncClient(reconnection=False)
    kwargs: dict[str, Any] = {"transports": ["websocket"], "wait_timeout": 5}
    if how == "no cookie":
        kwargs["headers"] = {"Origin": app_env.base}
    elif how == "bad token":
        kwargs["auth"] = {"token": "apt_not_a_token"}
    elif how == "foreign origin":
        kwargs["headers"] = {"Cookie": app_env.cookie, "Origin": "https://evil.example.com"}
    else:  # a valid token does not make a foreign web page acceptable either
        kwargs["auth"] = {"token": await add_token(app_env.data_dir)}
        kwargs["headers"] = {"Origin": "https://evil.example.com"}
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(app_env.base, **kwargs)
    assert not client.connected


async def test_browsers_cannot_publish(pair: tuple[Env, Browser, Any]) -> None:
    app_env, browser, _publisher = pair
    ack = await browser.client.call("status", {"status": "spoofed"})
    assert ack["error"] == "forbidden"
    assert await count(app_env, "status") == 0


async def test_rest_publishing_with_a_token(pair: tuple[Env, Browser, Any]) -> None:
    app_env, browser, _publisher = pair
    token = await add_token(app_env.data_dir, "rest-camera")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as anonymous:
        png = make_png(rgb=(9, 9, 9))
        posted = await anonymous.post(f"{app_env.base}/api/image", content=png,
                                      headers={**auth, "Content-Type": "image/png"})
        assert posted.status_code == 201 and posted.json()["mime"] == "image/png"
        await wait_for(lambda: browser.of("image2v"), what="the REST frame")
        assert browser.of("image2v")[0]["image"] == png
        reading = await anonymous.post(f"{app_env.base}/api/temphum", headers=auth,
                                       json={"temperature": 20, "humidity": 50})
        assert reading.status_code == 201
        status = await anonymous.post(f"{app_env.base}/api/status", headers=auth,
                                      json={"status": "done"})
        assert status.status_code == 201 and status.json()["status"] == "done"
        limit = app_env.app.services.settings.image_max_bytes
        for body, code in ((b"not an image", 415), (make_jpeg_like(limit + 10), 413),
                           (make_jpeg_like(limit * 2), 413)):
            response = await anonymous.post(f"{app_env.base}/api/image", content=body, headers=auth)
            assert response.status_code == code and "error" in response.json()
        await wait_for(lambda: stored(app_env, 1), what="the good frame stored")
        bad = await anonymous.post(f"{app_env.base}/api/temphum", headers=auth,
                                   json={"temperature": 500, "humidity": 50})
        assert bad.status_code == 422 and "temperature" in bad.json()["message"]
        nobody = await anonymous.post(f"{app_env.base}/api/status", json={"status": "x"})
        assert nobody.status_code == 401
    assert await count(app_env, "images") == 1
    status_body = (await app_env.client.get(f"{app_env.base}/status")).json()["relay"]
    # Four rejections, but the twice-the-limit body was refused by the server's body limit before
    # the relay saw it, so the relay counted three.
    assert status_body["framesIn"] == 1 and status_body["rejected"] == 3
    assert status_body["browsers"] == 1 and status_body["publishers"] == 1


async def test_events_and_rest_share_one_model_and_its_messages(
    pair: tuple[Env, Browser, Any]
) -> None:
    app_env, _browser, publisher = pair
    assert await publisher.call("temphum", [21, 40]) == {
        "ok": False, "error": "invalid", "message": "send an object with temperature, humidity"}
    hot = {"temperature": 500, "humidity": 40}
    ack = await publisher.call("temphum", hot)
    token = await add_token(app_env.data_dir, "rest-camera")
    async with httpx.AsyncClient(timeout=10) as anonymous:
        rest = await anonymous.post(f"{app_env.base}/api/temphum", json=hot,
                                    headers={"Authorization": f"Bearer {token}"})
    assert rest.status_code == 422
    assert ack["message"] == rest.json()["message"] == (
        "temperature: Input should be less than or equal to 125")
    # A newline, DEL, a C1 control, the line separator and a right-to-left override (which makes
    # a status read backwards on the dashboard) are all refused the same way.
    for text in ("two\nlines", "del\x7f", "c1\x85mid", "line\u2028sep", "gnp.\u202eexe"):
        assert (await publisher.call("status", {"status": text}))["message"] == (
            "status: must be one line of printable text"), repr(text)
    assert (await publisher.call("status", {"status": "Zürich 🖨 ok"}))["ok"] is True


async def _closed_without_time_passing(client: socketio.AsyncClient, what: str) -> None:
    """The app's clock stands still: no periodic re-check can have closed it."""
    await wait_for(lambda: not client.connected, what=what)


async def test_engineio_sessions_that_never_join_are_closed(logged_in: Env) -> None:
    """Anonymous handshakes that never send the Socket.IO connect (or were refused) are closed
    after JOIN_TIMEOUT_S on the app's clock; a joined browser stays."""
    lurker = engineio.AsyncClient()  # the handshake only
    await lurker.connect(logged_in.base, transports=["websocket"], engineio_path="socket.io")
    refused = socketio.AsyncClient(reconnection=False)  # no cookie, no token: refused
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(logged_in.base, transports=["websocket"], wait_timeout=10)
    browser = await connect_browser(logged_in)
    waited = 0.0

    def advanced_and_closed() -> bool:
        nonlocal waited
        logged_in.clock.advance(RECHECK_S)
        waited += RECHECK_S
        return lurker.state != "connected"

    await wait_for(advanced_and_closed, what="the unjoined Engine.IO session closed")
    assert waited >= JOIN_TIMEOUT_S  # not before: a slow client may still join
    await wait_for(lambda: len(logged_in.app.channels.sio.eio.sockets) == 1,
                   what="only the browser's session left")
    assert browser.client.connected
    await browser.client.disconnect()


async def test_logout_closes_the_sessions_open_sockets_at_once(logged_in: Env) -> None:
    browser = await connect_browser(logged_in)
    assert browser.client.connected
    assert (await logged_in.client.delete(f"{logged_in.base}/api/session")).status_code == 200
    await _closed_without_time_passing(browser.client, "the browser's socket to close")


async def test_web_password_change_and_deletion_close_sockets_at_once(logged_in: Env) -> None:
    await add_user(logged_in.data_dir, "bob")
    bob = httpx.AsyncClient(timeout=10)
    assert (await bob.post(f"{logged_in.base}/api/session",
                           json={"username": "bob", "password": PASSWORD})).status_code == 200
    bobs = Browser()
    await bobs.client.connect(logged_in.base, transports=["websocket"], wait_timeout=10, headers={
        "Cookie": f"appliance_session={bob.cookies['appliance_session']}",
        "Origin": logged_in.base})
    alices = await connect_browser(logged_in)
    base = logged_in.base
    changed = await logged_in.client.put(f"{base}/api/users/bob/password",
                                         json={"password": "bob's new password"})
    assert changed.status_code == 200
    await _closed_without_time_passing(bobs.client, "bob's socket to close after the change")
    assert alices.client.connected  # alice's own session goes on
    await add_user(logged_in.data_dir, "carol")
    assert (await logged_in.login("carol")).status_code == 200
    carols = await connect_browser(logged_in)
    assert (await bob.post(f"{base}/api/session", json={
        "username": "bob", "password": "bob's new password"})).status_code == 200
    assert (await bob.delete(f"{base}/api/users/carol")).status_code == 200
    await _closed_without_time_passing(carols.client, "carol's socket to close after user del")
    await bob.aclose()


async def _closed_within_one_watch(env: Env, client: socketio.AsyncClient, what: str) -> None:
    """Another process's commit is seen within sessions.WATCH_S, well before RECHECK_S."""
    assert WATCH_S < RECHECK_S
    env.clock.advance(WATCH_S)
    await _closed_without_time_passing(client, what)


async def test_cli_password_change_and_deletion_close_browser_sockets(logged_in: Env) -> None:
    browser = await connect_browser(logged_in)
    db = await Database.open(logged_in.data_dir / "appliance.db")  # as `appliance user passwd`
    try:
        await accounts.set_password(db, "alice", "a brand new password")
        await _closed_within_one_watch(logged_in, browser.client, "the socket to close (passwd)")
        await add_user(logged_in.data_dir, "bob")
        assert (await logged_in.login("bob")).status_code == 200
        bobs = await connect_browser(logged_in)
        await accounts.delete_user(db, "bob")  # as `appliance user del`
        await _closed_within_one_watch(logged_in, bobs.client, "the socket to close (user del)")
    finally:
        await db.close()


async def test_a_session_past_its_maximum_age_closes_its_open_socket(logged_in: Env) -> None:
    browser = await connect_browser(logged_in)
    logged_in.clock.advance(RECHECK_S)  # an ordinary re-check: still alive
    await wait_for(lambda: logged_in.clock.sleepers >= 3, what="the re-check to sleep again")
    assert browser.client.connected
    logged_in.clock.advance(accounts.SESSION_MAX_AGE.total_seconds())
    await _closed_without_time_passing(browser.client, "the socket of a 30-day-old session")


async def test_revoked_token_stops_publishing_on_its_open_connection(logged_in: Env) -> None:
    token = await add_token(logged_in.data_dir)
    publisher = await connect_publisher(logged_in, token)
    ack = await publisher.call("status", {"status": "before"}, timeout=10)
    assert ack["ok"] is True
    db = await Database.open(logged_in.data_dir / "appliance.db")  # as `appliance token revoke`
    try:
        await accounts.revoke_token(db, "camera")
    finally:
        await db.close()
    await _closed_within_one_watch(logged_in, publisher, "the publisher's socket to close")


async def test_a_forgotten_beacon_reaches_open_dashboards_as_removed(logged_in: Env) -> None:
    """presence2v {id, removed: true} when an unpaired beacon has been silent for forget_after_s
    (what the HIL suite's discovery scenario waits for)."""
    browser = await connect_browser(logged_in)
    await wait_for(lambda: logged_in.device(B1), what="beacon 1 discovered")
    await logged_in.radio.set_present(B1, False)
    forget = logged_in.app.services.settings.forget_after_s

    def advanced_and_removed() -> bool:
        logged_in.clock.advance(forget / 4)
        return any(e.get("id") == B1 and e.get("removed") for e in browser.of("presence2v"))

    await wait_for(advanced_and_removed, what="presence2v removed for beacon 1")
    await browser.client.disconnect()
