"""Every endpoint, good and bad input, against the real app on hypercorn with a real SQLite file."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import B1, B2, Env
from helpers import (
    PASSWORD,
    FakeClock,
    InjectableRadio,
    add_token,
    make_settings,
    running_server,
    wait_for,
)
from pydantic import ValidationError
from quart_schema import validate_response

from appliance import schema
from appliance.app import create_app
from appliance.auth import accounts
from appliance.store import readings
from appliance.store.db import Database
from appliance.web.guard import is_public, public


# -- health, login, sessions ---------------------------------------------------------------------
async def test_health_needs_no_login_and_keeps_reference_fields(app_env: Env) -> None:
    response = await app_env.client.get(f"{app_env.base}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["service"] == "appliance" and body["version"]


async def test_json_login_sets_an_httponly_lax_cookie_and_logout_ends_the_session(app_env: Env) -> None:
    response = await app_env.login()
    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert (await app_env.client.get(f"{app_env.base}/api/session")).json()["username"] == "alice"
    assert (await app_env.client.delete(f"{app_env.base}/api/session")).status_code == 200
    after = await app_env.client.get(f"{app_env.base}/api/session")
    assert after.status_code == 401
    assert after.json()["error"] == "unauthorized"


async def test_wrong_password_is_401_with_a_message(app_env: Env) -> None:
    response = await app_env.login(password="wrong password")
    assert response.status_code == 401
    assert response.json() == {"error": "bad_credentials", "message": "wrong user name or password"}
    assert (await app_env.login(username="nobody")).status_code == 401


async def test_cookie_is_secure_when_a_trusted_proxy_says_https(app_env: Env) -> None:
    response = await app_env.client.post(
        f"{app_env.base}/api/session", json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status_code == 200
    assert "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize("app_env", [{"trusted_proxies": ()}], indirect=True)
async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(app_env: Env) -> None:
    response = await app_env.client.post(
        f"{app_env.base}/api/session", json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200
    assert "Secure" not in response.headers["set-cookie"]


@pytest.mark.parametrize("app_env", [{"login_max_failures": 3}], indirect=True)
async def test_repeated_failures_are_throttled_with_retry_after(app_env: Env) -> None:
    for _ in range(3):
        assert (await app_env.login(password="wrong password")).status_code == 401
    blocked = await app_env.login()  # even the right password waits out the lockout
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "too_many_attempts"
    assert 0 < int(blocked.headers["Retry-After"]) <= 300
    app_env.clock.advance(301)
    assert (await app_env.login()).status_code == 200


async def test_a_failed_login_is_one_log_line_with_user_and_client_and_no_password(
        app_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert (await app_env.login(password="hunter2 wrong guess")).status_code == 401
    failed = [r.getMessage() for r in caplog.records if "Failed login" in r.getMessage()]
    assert failed == ["Failed login for 'alice' from 127.0.0.1"]
    assert "hunter2" not in caplog.text


async def _login_from(app_env: Env, client: str, password: str) -> httpx.Response:
    return await app_env.client.post(
        f"{app_env.base}/api/session", json={"username": "alice", "password": password},
        headers={"X-Forwarded-For": client})


@pytest.mark.parametrize("app_env", [{"login_max_failures": 2}], indirect=True)
async def test_failures_for_one_user_do_not_lock_the_owner_out(app_env: Env) -> None:
    for client in ("198.51.100.1", "198.51.100.2"):
        assert (await _login_from(app_env, client, "nope nope")).status_code == 401
    # A client that has failed waits; the owner from a client with no failures gets in.
    assert (await _login_from(app_env, "198.51.100.1", "nope nope")).status_code == 429
    assert (await _login_from(app_env, "198.51.100.2", PASSWORD)).status_code == 429
    assert (await _login_from(app_env, "198.51.100.3", PASSWORD)).status_code == 200


@pytest.mark.parametrize("app_env", [{"login_max_failures": 5}], indirect=True)
async def test_concurrent_guesses_are_throttled_before_the_password_check(app_env: Env) -> None:
    answers = await asyncio.gather(*(app_env.login(password=f"wrong guess {n}") for n in range(30)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * 5 + [429] * 25


@pytest.mark.parametrize("app_env", [{"login_max_failures": 3}], indirect=True)
async def test_ipv6_addresses_of_one_64_are_one_client(app_env: Env) -> None:
    async def guess(n: int) -> int:  # a fresh address and a fresh name each time
        response = await app_env.client.post(
            f"{app_env.base}/api/session", json={"username": f"nobody{n}", "password": "nope nope"},
            headers={"X-Forwarded-For": f"2001:db8:7:7::{n + 1}"})
        return response.status_code

    assert [await guess(n) for n in range(4)] == [401, 401, 401, 429]


async def test_login_redirects_only_to_same_origin_paths(app_env: Env) -> None:
    async def next_of(target: str) -> str:
        app_env.client.cookies.clear()
        response = await app_env.client.post(f"{app_env.base}/login", data={
            "username": "alice", "password": PASSWORD, "next": target})
        assert response.status_code == 302, response.text
        return str(response.headers["location"])

    for hostile in ("/\t/evil.example", "/\n/evil.example", "//evil.example", "/\\evil.example",
                    "https://evil.example/", "/ /evil.example", "/\x7f/evil.example", "\t//evil"):
        assert await next_of(hostile) == "/", hostile
    assert await next_of("/settings?tab=users") == "/settings?tab=users"


async def test_html_login_form_redirects_back_and_pages_need_login(app_env: Env) -> None:
    page = await app_env.client.get(f"{app_env.base}/", headers={"Accept": "text/html"})
    assert page.status_code == 302 and page.headers["location"].startswith("/login?next=/")
    form = await app_env.client.get(f"{app_env.base}/login")
    assert form.status_code == 200 and 'name="password"' in form.text
    bad = await app_env.client.post(f"{app_env.base}/login", data={"username": "alice", "password": "x"})
    assert bad.status_code == 401 and "wrong user name or password" in bad.text
    good = await app_env.client.post(f"{app_env.base}/login",
                                 data={"username": "alice", "password": PASSWORD, "next": "/docs"})
    assert good.status_code == 302 and good.headers["location"] == "/docs"
    evil = await app_env.client.post(f"{app_env.base}/login", data={
        "username": "alice", "password": PASSWORD, "next": "//evil.example.com/"})
    assert evil.headers["location"] == "/"
    index = await app_env.client.get(f"{app_env.base}/")
    assert index.status_code == 200 and "alice" in index.text


async def test_pages_carry_security_headers_and_a_csp_without_inline_script(app_env: Env) -> None:
    response = await app_env.client.get(f"{app_env.base}/login")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script" not in response.text


# -- presence --------------------------------------------------------------------------------------
async def test_devices_lists_the_virtual_beacons(logged_in: Env) -> None:
    app_env = logged_in

    async def both_seen() -> bool:
        return None not in (await app_env.device(B1), await app_env.device(B2))

    await wait_for(both_seen, what="both virtual beacons in /devices")
    device = await app_env.device(B1)
    assert device is not None
    assert device["isPaired"] is False and device["isConnected"] is False
    assert device["state"] == "discovered" and device["beaconId"] == 1
    assert isinstance(device["rssi"], int) and -100 < device["rssi"] < 0
    for key in ("name", "rssiSmoothed", "lastSeen", "firstSeen", "requiresTap", "userId"):
        assert key in device


async def test_pair_connects_over_gatt_and_unpair_releases(logged_in: Env) -> None:
    app_env = logged_in
    await wait_for(lambda: app_env.device(B1), what="beacon 1 discovered")
    response = await app_env.client.post(f"{app_env.base}/pair", json={
        "deviceId": B1.lower(), "userId": "user-uuid", "userName": "alice@example.com"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["success"], body["message"], body["deviceId"], body["userId"]) == (
        True, "Device paired successfully", B1, "user-uuid")

    async def linked() -> bool:
        device = await app_env.device(B1)
        return bool(device and device["isConnected"])

    await wait_for(linked, within=10, what="a GATT link to the paired beacon")
    device = await app_env.device(B1)
    assert device is not None and device["isPaired"] and device["state"] == "connected"
    assert device["userName"] == "alice@example.com"

    status = (await app_env.client.get(f"{app_env.base}/status")).json()
    assert status["bluetooth"]["connectedCount"] == 1
    assert status["pairing"] == {"totalPaired": 1, "requiresTap": 0, "activeRecent": 1}

    response = await app_env.client.post(f"{app_env.base}/unpair", json={"deviceId": B1})
    assert response.json() == {"success": True, "message": "Device unpaired", "deviceId": B1}
    device = await app_env.device(B1)
    assert device is not None and not device["isPaired"] and not device["isConnected"]
    again = await app_env.client.post(f"{app_env.base}/unpair", json={"deviceId": B1})
    assert again.status_code == 404 and again.json()["error"] == "not_paired"


async def test_beacon_away_past_the_window_needs_the_reconnect_tap(logged_in: Env) -> None:
    app_env = logged_in
    await wait_for(lambda: app_env.device(B1), what="beacon 1 discovered")
    await app_env.client.post(f"{app_env.base}/pair", json={"deviceId": B1, "userId": "u", "userName": "a"})

    async def state_is(expected: str, connected: bool | None = None) -> bool:
        device = await app_env.device(B1)
        return bool(device and device["state"] == expected
                    and (connected is None or device["isConnected"] is connected))

    await wait_for(lambda: state_is("connected", True), within=10, what="linked")
    await app_env.radio.set_present(B1, False)
    await wait_for(lambda: state_is("connected", False), what="link lost")
    app_env.clock.advance(31)
    await wait_for(lambda: state_is("away"), what="away")
    app_env.clock.advance(30 * 60)
    extra = 0.0

    async def past_the_window() -> bool:
        # A sighting the radio had queued before set_present(False) may be handled late (on a
        # loaded machine), stamped with the fake clock's later time: the window then runs a
        # little later. Give it a minute or two, no more.
        nonlocal extra
        if await state_is("requiresTap"):
            return True
        app_env.clock.advance(10)
        extra += 10
        return False

    await wait_for(past_the_window, what="requiresTap")
    assert extra <= 120, extra
    assert (await app_env.client.get(f"{app_env.base}/status")).json()["pairing"]["requiresTap"] == 1

    await app_env.radio.set_present(B1, True)
    app_env.clock.advance(1)
    device = await app_env.device(B1)
    assert device is not None and device["requiresTap"] and not device["isConnected"]
    await wait_for(lambda: _fresh(app_env), what="the beacon heard again")
    assert (await app_env.device(B1))["state"] == "requiresTap"  # type: ignore[index]

    response = await app_env.client.post(f"{app_env.base}/reconnect", json={"deviceId": B1})
    assert response.status_code == 200
    assert (response.json()["message"], response.json()["userId"]) == ("Device reconnected", "u")
    await wait_for(lambda: state_is("connected", True), within=10, what="reconnected")


async def _fresh(app_env: Env) -> bool:
    device = await app_env.device(B1)
    return bool(device) and device["lastSeen"] == _iso(app_env.clock.wall())  # type: ignore[index]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("path", "body", "status", "error", "fragment"),
    [
        ("/pair", {"deviceId": "not-a-mac", "userId": "u", "userName": "n"}, 422, "invalid",
         "deviceId: 'not-a-mac' is not a Bluetooth address"),
        ("/pair", {"deviceId": "AA:BB:CC:DD:EE:FF", "userName": "n"}, 422, "invalid", "userId"),
        ("/pair", {"deviceId": "AA:BB:CC:DD:EE:FF", "userId": "", "userName": "n"}, 422, "invalid",
         "userId"),
        ("/pair", {"deviceId": "AA:BB:CC:DD:EE:FF", "userId": "u", "userName": "Eve\nadmin"}, 422,
         "invalid", "userName: must be one line of printable text"),
        ("/pair", {"deviceId": "AA:BB:CC:DD:EE:FF", "userId": "u\u202egnp", "userName": "n"}, 422,
         "invalid", "userId: must be one line of printable text"),
        ("/pair", {"deviceId": "AA:BB:CC:DD:EE:FF", "userId": "u", "userName": "n"}, 404,
         "unknown_device", "no beacon AA:BB:CC:DD:EE:FF has been seen"),
        ("/pair", [1, 2], 400, "bad_json", "JSON object"),
        ("/reconnect", {"deviceId": "AA:BB:CC:DD:EE:FF"}, 404, "not_paired", "not paired"),
        ("/reconnect", {}, 422, "invalid", "deviceId"),
        ("/unpair", {"deviceId": 42}, 422, "invalid", "deviceId"),
    ],
)
async def test_bad_presence_requests_get_clear_4xx(
    logged_in: Env, path: str, body: Any, status: int, error: str, fragment: str
) -> None:
    response = await logged_in.client.post(f"{logged_in.base}{path}", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert fragment in response.json()["message"]


async def test_non_json_bodies_get_400_not_500(logged_in: Env) -> None:
    app_env = logged_in
    for content, ctype in (("deviceId=AA", "application/x-www-form-urlencoded"),
                           ("{not json", "application/json"), ("", "application/json")):
        response = await app_env.client.post(f"{app_env.base}/pair", content=content,
                                         headers={"Content-Type": ctype})
        assert response.status_code == 400, (content, response.text)
        assert response.json()["error"] == "bad_json"


async def test_undecodable_and_too_deep_json_gets_400_with_a_reason_even_anonymously(
        logged_in: Env, caplog: pytest.LogCaptureFixture) -> None:
    bodies = {b"\xff\xfe": "not UTF-8", '{"username": "alice"}'.encode("utf-16"): "not UTF-8",
              b"[" * 1000 + b"]" * 1000: "nests too deep"}
    async with httpx.AsyncClient(timeout=10) as anonymous:
        for content, says in bodies.items():
            for client, method, path in ((anonymous, "POST", "/api/session"),
                                         (logged_in.client, "POST", "/pair"),
                                         (logged_in.client, "PUT", "/api/timelapse_config")):
                response = await client.request(method, f"{logged_in.base}{path}", content=content,
                                                headers={"Content-Type": "application/json"})
                assert response.status_code == 400, (path, response.text)
                assert response.json()["error"] == "bad_json" and says in response.json()["message"]
    assert "Traceback" not in caplog.text and "Unhandled" not in caplog.text


async def test_unknown_route_and_method_are_json_errors(logged_in: Env) -> None:
    missing = await logged_in.client.get(f"{logged_in.base}/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = await logged_in.client.get(f"{logged_in.base}/pair")
    assert wrong.status_code == 405 and "error" in wrong.json()


async def test_cross_origin_writes_with_a_cookie_are_refused(logged_in: Env) -> None:
    app_env = logged_in
    response = await app_env.client.post(f"{app_env.base}/unpair", json={"deviceId": B1},
                                     headers={"Origin": "https://evil.example.com"})
    assert response.status_code == 403 and response.json()["error"] == "bad_origin"
    own = await app_env.client.post(f"{app_env.base}/unpair", json={"deviceId": B1},
                                headers={"Origin": app_env.base})
    assert own.status_code == 404  # got through the origin check to the real answer


# -- timelapse API ---------------------------------------------------------------------------------
async def test_temphum_lists_one_day_and_rejects_bad_dates(logged_in: Env) -> None:
    app_env = logged_in
    db = await Database.open(app_env.data_dir / "appliance.db")
    day = datetime(2026, 11, 21, tzinfo=UTC)
    await readings.add_temphum(db, day + timedelta(hours=1), 21.5, 40.0)
    await readings.add_temphum(db, day + timedelta(days=1, hours=1), 22.0, 41.0)
    await db.close()
    response = await app_env.client.get(f"{app_env.base}/api/temphum", params={"date": "2026-11-21"})
    assert response.json() == [
        {"timestamp": "2026-11-21T01:00:00.000Z", "temperature": 21.5, "humidity": 40.0}]
    today = await app_env.client.get(f"{app_env.base}/api/temphum")  # the fake clock's 2026-11-22
    assert [r["temperature"] for r in today.json()] == [22.0]
    for bad in ("2026-13-01", "yesterday", "2026-02-30", "2026-11-21T00:00"):
        response = await app_env.client.get(f"{app_env.base}/api/temphum", params={"date": bad})
        assert response.status_code == 422, bad
        assert response.json()["error"] == "invalid" and bad in response.json()["message"]


async def test_timelapse_config_round_trip_and_validation(logged_in: Env) -> None:
    app_env = logged_in
    url = f"{app_env.base}/api/timelapse_config"
    assert (await app_env.client.get(url)).json() == {
        "image_delay": 10, "temphum_delay": 60, "status_delay": 10}
    new = {"image_delay": 5, "temphum_delay": 120, "status_delay": 30}
    assert (await app_env.client.put(url, json=new)).json() == new
    for bad in ({**new, "image_delay": 0}, {**new, "status_delay": "often"},
                {"image_delay": 5}, {**new, "extra": 1}):
        response = await app_env.client.put(url, json=bad)
        assert response.status_code == 422, bad
    assert (await app_env.client.get(url)).json() == new  # nothing bad was stored


# -- tokens and docs -------------------------------------------------------------------------------
async def test_publisher_token_reads_but_cannot_pair(app_env: Env) -> None:
    token = await add_token(app_env.data_dir)
    auth = {"Authorization": f"Bearer {token}"}
    assert (await app_env.client.get(f"{app_env.base}/devices", headers=auth)).status_code == 200
    assert (await app_env.client.get(f"{app_env.base}/api/timelapse_config", headers=auth)).status_code == 200
    pair = await app_env.client.post(f"{app_env.base}/pair", headers=auth,
                                 json={"deviceId": B1, "userId": "u", "userName": "n"})
    assert pair.status_code == 401
    bad = await app_env.client.get(f"{app_env.base}/devices", headers={"Authorization": "Bearer apt_nope"})
    assert bad.status_code == 401 and bad.json()["error"] == "bad_token"


async def test_openapi_document_and_browsable_docs(logged_in: Env) -> None:
    app_env = logged_in
    spec = (await app_env.client.get(f"{app_env.base}/openapi.json")).json()
    assert {"/pair", "/reconnect", "/unpair", "/devices", "/status", "/health",
            "/api/temphum", "/api/timelapse_config"} <= set(spec["paths"])
    body = spec["paths"]["/pair"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"deviceId", "userId", "userName"}
    assert "/login" not in spec["paths"]  # HTML pages are not API
    docs = await app_env.client.get(f"{app_env.base}/docs")
    assert docs.status_code == 200 and "/pair" in docs.text and "deviceId" in docs.text
    assert "the raw bytes, as image/jpeg or image/png" in docs.text  # POST /api/image
    assert "Answer (201)" in docs.text


@pytest.mark.parametrize("app_env", [{"cloudflared_bin": "/nonexistent/cloudflared"}], indirect=True)
async def test_status_and_dashboard_say_how_to_set_up_the_tunnel(logged_in: Env) -> None:
    app_env = logged_in
    status = (await app_env.client.get(f"{app_env.base}/status")).json()
    assert status["tunnel"]["installed"] is False
    assert "Cloudflare's repository" in status["tunnel"]["message"]
    assert status["setup"] == {"at": None, "applied": [], "errors": []}
    page = await app_env.client.get(f"{app_env.base}/", headers={"Accept": "text/html"})
    assert "cloudflared is not installed" in page.text


@pytest.mark.parametrize(  # where `appliance firstboot` would write it
    "app_env", [{"firstboot_status_file": lambda data_dir: str(data_dir / "firstboot.json")}],
    indirect=True)
async def test_dashboard_shows_first_boot_errors(logged_in: Env) -> None:
    app_env = logged_in
    status_file = app_env.data_dir / "firstboot.json"
    assert app_env.app.services.settings.firstboot_status_file == str(status_file)
    status_file.write_text('{"at": "2026-11-22T06:00:00Z", "applied": ["timezone"], "errors": '
                           '[{"key": "hostname", "message": "a host name is lower-case"}]}')
    page = await app_env.client.get(f"{app_env.base}/", headers={"Accept": "text/html"})
    assert "First-boot file: hostname: a host name is lower-case" in page.text
    setup = (await app_env.client.get(f"{app_env.base}/status")).json()["setup"]
    assert setup["applied"] == ["timezone"] and setup["errors"][0]["key"] == "hostname"


async def test_every_api_route_documents_its_answer_and_the_publish_routes_their_bodies(
    logged_in: Env,
) -> None:
    spec = (await logged_in.client.get(f"{logged_in.base}/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok = {"200", "201"} & set(operation["responses"])
            assert ok, (method, path, "has no documented answer")
            # A login has its own form; stopping a timelapse has nothing to say but its id.
            bodiless = path.startswith("/api/session") or path.endswith("/stop")
            if method in ("post", "put") and not bodiless:
                assert "requestBody" in operation, (method, path)
    image = spec["paths"]["/api/image"]["post"]
    assert set(image["requestBody"]["content"]) == {"image/jpeg", "image/png"}
    assert {"201", "413", "415"} <= set(image["responses"])
    error = image["responses"]["413"]["content"]["application/json"]["schema"]
    assert set(error["required"]) == {"error", "message"}
    reading = spec["paths"]["/api/temphum"]["post"]
    body = reading["requestBody"]["content"]["application/json"]["schema"]
    assert (body["properties"]["temperature"]["minimum"], body["properties"]["temperature"]["maximum"]
            ) == (-40, 125)
    answer = reading["responses"]["201"]["content"]["application/json"]["schema"]
    assert set(answer["required"]) == {"ok", "temperature", "humidity", "timestamp"}
    status = spec["paths"]["/api/status"]["post"]["requestBody"]["content"]["application/json"]
    assert status["schema"]["required"] == ["status"]
    user = spec["paths"]["/api/users"]["post"]["requestBody"]["content"]["application/json"]
    assert user["schema"]["properties"]["password"]["minLength"] == 8


async def test_the_settings_forms_check_the_apis_rules(logged_in: Env) -> None:
    page = (await logged_in.client.get(f"{logged_in.base}/settings")).text
    assert page.count('pattern="[A-Za-z0-9_.@\\-]{1,64}"') == 2  # user and token names
    assert 'minlength="8" maxlength="1024"' in page


async def test_a_short_password_gets_the_policy_message(logged_in: Env) -> None:
    response = await logged_in.client.post(f"{logged_in.base}/api/users",
                                           json={"username": "bob", "password": "short"})
    assert response.status_code == 422
    assert response.json() == {"error": "invalid",
                               "message": "password: the password must be at least 8 characters"}


async def test_a_response_that_breaks_its_model_is_a_logged_500_and_never_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(make_settings(tmp_path), radio=InjectableRadio(), clock=FakeClock())

    @app.quart.get("/broken")
    @public
    @validate_response(schema.Health)
    async def broken() -> dict[str, Any]:
        return {"status": "ok", "service": "leaky"}  # no version: breaks Health

    async with running_server(app) as base, httpx.AsyncClient() as client:
        response = await client.get(f"{base}/broken")
    assert response.status_code == 500
    assert response.json()["error"] == "internal" and "leaky" not in response.text
    assert "GET /broken breaks its model" in caplog.text


def test_the_services_exist_once_the_app_is_served(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), radio=InjectableRadio(), clock=FakeClock())
    with pytest.raises(RuntimeError, match="not started yet"):
        _ = app.services


def test_api_time_is_the_references_format_whatever_the_zone() -> None:
    helsinki = timezone(timedelta(hours=2))
    moment = datetime(2026, 11, 22, 14, 0, 0, 123456, tzinfo=helsinki)
    assert schema.api_time(moment) == "2026-11-22T12:00:00.123Z"
    reading = schema.TempHumOut(temperature=20, humidity=40, timestamp=moment)
    assert reading.model_dump()["timestamp"] == "2026-11-22T12:00:00.123Z"
    with pytest.raises(ValidationError):  # a time without a zone is a bug, not a UTC time
        schema.TempHumOut(temperature=20, humidity=40, timestamp=datetime(2026, 11, 22))  # noqa: DTZ001


async def test_logout_ends_the_session_on_the_server(logged_in: Env) -> None:
    old_cookie = logged_in.cookie
    assert (await logged_in.client.delete(f"{logged_in.base}/api/session")).status_code == 200
    replay = await logged_in.client.get(f"{logged_in.base}/api/session",
                                        headers={"Cookie": old_cookie})
    assert replay.status_code == 401 and replay.json()["error"] == "unauthorized"


async def test_a_cli_password_change_ends_a_session_checked_from_memory(logged_in: Env) -> None:
    for _ in range(2):  # the session is now in the app's cache
        assert (await logged_in.client.get(f"{logged_in.base}/devices")).status_code == 200
    cli = await Database.open(logged_in.data_dir / "appliance.db")  # `appliance user passwd`
    try:
        await accounts.set_password(cli, "alice", "another fine password")
    finally:
        await cli.close()
    # No time passes on the app's clock: the very next request sees the change.
    assert (await logged_in.client.get(f"{logged_in.base}/devices")).status_code == 401


@pytest.mark.parametrize("app_env", [{"session_idle_timeout_s": 600}], indirect=True)
async def test_an_idle_session_ends_and_a_used_one_does_not(logged_in: Env) -> None:
    for _ in range(3):  # used every 9 minutes, for 27 minutes
        logged_in.clock.advance(9 * 60)
        assert (await logged_in.client.get(f"{logged_in.base}/api/session")).status_code == 200
    logged_in.clock.advance(601)
    assert (await logged_in.client.get(f"{logged_in.base}/api/session")).status_code == 401


async def test_private_answers_are_not_cached_and_every_405_says_allow(logged_in: Env) -> None:
    base = logged_in.base
    for path in ("/api/tokens", "/api/users", "/devices", "/api/session"):
        response = await logged_in.client.get(f"{base}{path}")
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store", path
    for path in ("/", "/settings", "/docs"):
        page = await logged_in.client.get(f"{base}{path}", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store", path
    refused = await logged_in.client.patch(f"{base}/api/session")
    assert refused.status_code == 405 and refused.json()["error"] == "method_not_allowed"
    assert {m.strip() for m in refused.headers["allow"].split(",")} >= {"GET", "POST", "DELETE"}
    health = await logged_in.client.put(f"{base}/health")
    assert health.status_code == 405 and "GET" in health.headers["allow"]


async def test_the_openapi_document_says_who_may_call_each_route_and_what_it_may_answer(
        logged_in: Env) -> None:
    """Enough for a generated client: security per operation (the guard's rules), required
    bodies, every $ref resolvable, the error answers any route can give, the input patterns."""
    spec = (await logged_in.client.get(f"{logged_in.base}/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie",
                                  "name": "appliance_session"}
    assert schemes["token"]["scheme"] == "bearer"
    views = logged_in.app.quart.view_functions
    rules = {(re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method.lower()): rule.endpoint
             for rule in logged_in.app.quart.url_map.iter_rules() for method in rule.methods or ()}

    def resolve(ref: str) -> Any:
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return ([node["$ref"]] if "$ref" in node else []) + [
                r for value in node.values() for r in refs(value)]
        return [r for value in node for r in refs(value)] if isinstance(node, list) else []

    for ref in refs(spec["paths"]) + refs(spec["components"]):
        assert resolve(ref), ref
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            view = views[rules[(path, method)]]  # {name}: the rule's <converter:name>
            if is_public(rules[(path, method)], view):
                assert operation["security"] == [], path
            else:
                assert {"session": []} in operation["security"], (method, path)
                assert "401" in operation["responses"], (method, path)
            if "requestBody" in operation:
                assert operation["requestBody"]["required"] is True, (method, path)
                assert {"400", "422"} <= set(operation["responses"]), (method, path)
    assert spec["paths"]["/api/status"]["post"]["security"] == [{"session": []}, {"token": []}]
    assert "404" in spec["paths"]["/api/printer"]["get"]["responses"]
    pair = spec["paths"]["/pair"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    device_id = resolve(pair["$ref"])["properties"]["deviceId"] if "$ref" in pair else \
        pair["properties"]["deviceId"]
    assert re.fullmatch(device_id["pattern"], "AA:BB:CC:DD:EE:FF")
    assert not re.fullmatch(device_id["pattern"], "AA:BB:CC:DD:EE")
    day = spec["paths"]["/api/temphum"]["get"]["parameters"][0]["schema"]["anyOf"][0]
    assert day["format"] == "date" and re.fullmatch(day["pattern"], "2026-12-02")
