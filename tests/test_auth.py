"""Auth: password hashing, throttling, tokens, the secret key, and that every route is guarded."""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import Env
from helpers import FakeClock, make_settings, running_server
from pydantic import ValidationError
from websockets.asyncio.client import connect as ws_connect

from appliance import firstboot
from appliance.app import create_app
from appliance.auth import accounts, secret_key
from appliance.auth.passwords import hash_password, verify_password
from appliance.auth.policy import PolicyError, check_name, check_password
from appliance.auth.sessions import SessionCache
from appliance.auth.throttle import (
    MAX_KEYS,
    USER_CEILING_FACTOR,
    USER_CEILING_WINDOW_FACTOR,
    LoginThrottle,
    client_key,
)
from appliance.auth.tokens import bearer_token, new_token, token_hash
from appliance.errors import ConfigError
from appliance.schema import NewToken, NewUser
from appliance.store import sessions as session_store
from appliance.store.db import Database
from appliance_sim.radio import VirtualRadio

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# (method, rule) pairs anyone may call; everything else needs a login or a token.
PUBLIC = {("GET", "/health"), ("GET", "/login"), ("POST", "/login"), ("POST", "/api/session"),
          ("GET", "/static/<path:filename>")}


async def test_passwords_are_hashed_with_scrypt_and_verified() -> None:
    hashed = await hash_password("a long enough secret")
    assert hashed.startswith("scrypt:") and "a long enough secret" not in hashed
    assert await verify_password(hashed, "a long enough secret")
    assert not await verify_password(hashed, "a long enough secreT")
    assert not await verify_password(None, "a long enough secret")  # unknown user
    with pytest.raises(PolicyError, match="at least 8"):
        await hash_password("short")


def _fail(throttle: LoginThrottle, client: str, user: str, now: float) -> None:
    assert not isinstance(throttle.begin(client, user, now), int)


def test_throttle_counts_failures_in_a_sliding_window() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60)
    for t in (0, 10, 20):
        assert throttle.retry_after("client:1.2.3.4", "user:alice", t) == 0
        _fail(throttle, "client:1.2.3.4", "user:alice", t)
    assert throttle.retry_after("client:1.2.3.4", "user:alice", 21) == 39
    assert throttle.retry_after("client:1.2.3.4", "user:bob", 21) == 39  # the client is locked
    assert throttle.begin("client:1.2.3.4", "user:alice", 21) == 39  # and nothing is counted
    assert throttle.retry_after("client:1.2.3.4", "user:alice", 60.5) == 0  # first one left


def test_throttle_counts_an_attempt_before_its_password_is_checked() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60)
    # Three checks in flight (none finished): the fourth must wait, not join them.
    attempts = [throttle.begin("client:1.2.3.4", "user:alice", 0) for _ in range(3)]
    assert throttle.begin("client:1.2.3.4", "user:alice", 0) == 60
    for attempt in attempts:  # the right password after all: none of them counts
        assert not isinstance(attempt, int)
        throttle.succeeded(attempt)
    assert throttle.retry_after("client:1.2.3.4", "user:alice", 0) == 0


def test_a_locked_user_still_lets_a_client_without_failures_try() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60)
    for t in (0, 1, 2):
        _fail(throttle, "client:198.51.100.1", "user:alice", t)
    assert throttle.retry_after("client:198.51.100.1", "user:alice", 3) == 57
    # The owner from elsewhere: no failures of its own, so it may try (and log in).
    owner = throttle.begin("client:203.0.113.9", "user:alice", 3)
    assert not isinstance(owner, int)
    throttle.succeeded(owner)
    assert throttle.retry_after("client:203.0.113.9", "user:alice", 4) == 0
    # A second attacker client that failed once for anyone is held back while alice is locked.
    for t in (5, 6, 7):
        _fail(throttle, "client:198.51.100.2", "user:alice", t)
    _fail(throttle, "client:198.51.100.3", "user:bob", 8)
    assert throttle.retry_after("client:198.51.100.3", "user:alice", 9) == 56


def test_guesses_from_many_clients_hit_the_per_user_ceiling() -> None:
    throttle = LoginThrottle(max_failures=2, window_s=60)
    ceiling = 2 * USER_CEILING_FACTOR
    for n in range(ceiling):  # each from a fresh client: allowed by the soft per-user limit
        _fail(throttle, f"client:10.0.{n // 250}.{n % 250}", "user:alice", n)
    wait = throttle.retry_after("client:192.0.2.1", "user:alice", ceiling)
    assert wait == 60 * USER_CEILING_WINDOW_FACTOR - ceiling  # the first one leaves at 720 s


def test_throttle_never_forgets_a_locked_key_under_a_spray() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=300)
    for t in (0, 1, 2):
        _fail(throttle, "client:198.51.100.1", "user:alice", t)
    for n in range(MAX_KEYS + 10):  # fresh names and addresses, as a spray would send
        _fail(throttle, f"client:10.{n // 65536}.{n // 256 % 256}.{n % 256}", f"user:u{n}", 3)
    assert throttle.retry_after("client:198.51.100.1", "user:alice", 4) > 0
    assert throttle.retry_after("client:198.51.100.1", "user:bob", 4) > 0


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == (
        "client:2001:db8:1:2::/64")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "client:192.0.2.7"
    assert client_key("not an address") == "client:not an address"
    assert client_key(None) == "client:None"


def test_tokens_are_random_and_only_their_hash_is_kept() -> None:
    one, two = new_token(), new_token()
    assert one != two and one.startswith("apt_") and len(one) > 40
    assert token_hash(one) != token_hash(two) and one not in token_hash(one)
    assert bearer_token(f"Bearer {one}") == one
    assert bearer_token(f"bearer  {one} ") == one
    assert bearer_token("Basic abc") is None and bearer_token(None) is None
    assert bearer_token("Bearer ") is None


async def test_token_lifecycle_stores_no_plain_token(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    _record, token = await accounts.add_token(db, "camera", now=NOW)
    assert await accounts.check_token(db, token, now=NOW) is not None
    assert await accounts.check_token(db, token + "x", now=NOW) is None
    dump = (tmp_path / "a.db").read_bytes() + (tmp_path / "a.db-wal").read_bytes()
    assert token.encode() not in dump and token_hash(token).encode() in dump
    with pytest.raises(accounts.AccountError, match="exists"):
        await accounts.add_token(db, "camera", now=NOW)
    await accounts.revoke_token(db, "camera")
    assert await accounts.check_token(db, token, now=NOW) is None
    await db.close()


async def test_password_change_and_deletion_end_existing_sessions(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    idle = timedelta(hours=1)
    user = await accounts.add_user(db, "alice", "first password", now=NOW)
    phone, laptop = [await accounts.start_session(db, user, now=NOW) for _ in range(2)]
    assert await accounts.user_for_session(db, phone, now=NOW, idle=idle) == user
    await accounts.end_session(db, phone)  # logout ends only that session
    assert await accounts.user_for_session(db, phone, now=NOW, idle=idle) is None
    assert await accounts.user_for_session(db, laptop, now=NOW, idle=idle) == user
    await accounts.set_password(db, "alice", "second password")
    assert await accounts.user_for_session(db, laptop, now=NOW, idle=idle) is None
    later = await accounts.start_session(db, user, now=NOW)
    await accounts.delete_user(db, "alice")
    assert await accounts.user_for_session(db, later, now=NOW, idle=idle) is None
    assert await accounts.user_for_session(db, "garbage", now=NOW, idle=idle) is None
    with pytest.raises(PolicyError, match="1-64 letters"):
        await accounts.add_user(db, "bad name!", "some password", now=NOW)
    await db.close()


async def test_cached_sessions_end_the_moment_any_connection_commits(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    cli = await Database.open(tmp_path / "a.db")  # another process: `appliance user passwd`
    cache = SessionCache(db)
    heard: list[str] = []
    cache.subscribe(lambda: heard.append("ended"))
    idle = timedelta(hours=1)
    user = await accounts.add_user(db, "alice", "first password", now=NOW)
    sid = await accounts.start_session(db, user, now=NOW)
    assert await accounts.user_for_session(db, sid, now=NOW, idle=idle, cache=cache) == user
    session, _version = cache.get(token_hash(sid))
    assert session is not None and session.user == user  # served from memory from now on
    await accounts.set_password(cli, "alice", "second password")
    assert await accounts.user_for_session(db, sid, now=NOW, idle=idle, cache=cache) is None
    # A session read before a commit and kept after it could be stale: it is not kept.
    again = await accounts.start_session(db, user, now=NOW)
    _missing, before = cache.get(token_hash(again))
    read = await session_store.get(db, token_hash(again))
    await accounts.end_session(cli, again)
    assert read is not None and cache.get(token_hash(again))[0] is None
    cache.put(read, before)
    assert cache.get(token_hash(again))[0] is None
    assert await accounts.user_for_session(db, again, now=NOW, idle=idle, cache=cache) is None
    # Ends in this process are told to the listeners at once; idle ends from memory too.
    idler = await accounts.start_session(db, user, now=NOW)
    alive = await accounts.user_for_session(db, idler, now=NOW, idle=idle, cache=cache)
    assert alive is not None and alive.username == "alice" and heard == []
    later = NOW + idle + timedelta(seconds=1)
    assert await accounts.user_for_session(db, idler, now=later, idle=idle, cache=cache) is None
    assert heard == ["ended"]
    assert await session_store.get(db, token_hash(idler)) is None
    await cli.close()
    await db.close()


async def test_sessions_end_when_idle_and_at_their_maximum_age(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    idle = timedelta(hours=12)
    user = await accounts.add_user(db, "alice", "first password", now=NOW)
    sid = await accounts.start_session(db, user, now=NOW)
    moment = NOW
    while moment - NOW < accounts.SESSION_MAX_AGE - idle:  # used twice a day: stays alive
        moment += timedelta(hours=11)
        assert await accounts.user_for_session(db, sid, now=moment, idle=idle) == user
    moment += timedelta(hours=11)  # past 30 days since login, however busy
    assert await accounts.user_for_session(db, sid, now=moment, idle=idle) is None
    idler = await accounts.start_session(db, user, now=NOW)
    gone = NOW + idle + timedelta(seconds=1)
    assert await accounts.user_for_session(db, idler, now=gone, idle=idle) is None
    await db.close()


def test_secret_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    key = secret_key.load_or_create(tmp_path / "data")
    path = tmp_path / "data" / "secret_key"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(key) == 64 and secret_key.load_or_create(tmp_path / "data") == key
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        secret_key.load_or_create(tmp_path / "data")


async def test_every_route_needs_a_login_except_the_public_ones(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), radio=VirtualRadio(0), clock=FakeClock())
    rules = [(method, rule.rule) for rule in app.quart.url_map.iter_rules()
             for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert len(rules) >= 15
    assert PUBLIC <= set(rules), "a public route went missing"
    async with running_server(app) as base, httpx.AsyncClient() as client:
        for method, rule in rules:
            path = re.sub(r"<(?:([^:>]+):)?([^>]+)>", lambda m: "style.css" if m[2] == "filename"
                          else "1" if m[1] == "int" else "x", rule)
            response = await client.request(method, base + path, json={})
            if (method, rule) in PUBLIC:
                assert response.status_code not in (401, 403), (method, rule)
                continue
            assert response.status_code == 401, (method, rule, response.status_code)
            assert response.json()["error"] == "unauthorized"
            page = await client.request(method, base + path, headers={"Accept": "text/html"})
            if method == "GET":  # a browser is sent to the login page instead
                assert page.status_code == 302 and page.headers["location"].startswith("/login")
            else:
                assert page.status_code == 401


@pytest.mark.parametrize(("password", "fragment"), [("short", "at least 8 characters"),
                                                    ("x" * 1025, "at most 1024 characters")])
def test_one_password_rule_for_the_cli_the_web_and_first_boot(password: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        check_password(password)
    with pytest.raises(ValidationError, match=fragment):
        NewUser(username="alice", password=password)
    _good, errors = firstboot.validate({"admin_user": "alice", "admin_password": password})
    assert errors["admin_password"] == f"the password must be {fragment}"


def test_one_name_rule_for_users_tokens_and_the_first_boot_admin() -> None:
    for bad in ("bad name!", "", "x" * 65):
        with pytest.raises(ValidationError, match="1-64 letters"):
            NewUser(username=bad, password="long enough")
        with pytest.raises(ValidationError, match="a token name is 1-64 letters"):
            NewToken(name=bad)
    assert check_name("Alice.B@home") == "Alice.B@home"
    # The first-boot admin is a Linux login as well: lower-case, starting with a letter.
    _good, errors = firstboot.validate({"admin_user": "Alice"})
    assert "lower-case" in errors["admin_user"]
    assert firstboot.validate({"admin_user": "alice"}) == ({"admin_user": "alice"}, {})


async def test_sessions_ended_by_age_are_deleted_at_the_next_login(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    user = await accounts.add_user(db, "alice", "first password", now=NOW)
    await accounts.start_session(db, user, now=NOW)
    await accounts.start_session(db, user, now=NOW + accounts.SESSION_MAX_AGE + timedelta(days=1))
    row = await db.fetch_one("SELECT COUNT(*) FROM sessions")
    assert row is not None and row[0] == 1
    await db.close()


async def test_a_session_cookie_is_verified_once_and_refused_after_it_expires(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from quart import Quart

    from appliance.app import _Auth

    app = Quart(__name__)
    app.secret_key = "k" * 32
    app.config["QUART_AUTH_DURATION"] = 100
    auth = _Auth(app)
    checks: list[object] = []
    real = auth.serializer_class

    def counting(*args: object) -> object:
        checks.append(args)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(auth, "serializer_class", counting)
    async with app.app_context():
        cookie = auth.dump_token("session-1")
        checks.clear()
        assert auth.load_token(cookie) == "session-1"
        assert auth.load_token(cookie) == "session-1"
        assert len(checks) == 1  # the second time from memory
        assert auth.load_token(cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")) is None
        signed = time.time()
        monkeypatch.setattr(time, "time", lambda: signed + 102)  # past its maximum age
        assert auth.load_token(cookie) is None


# Cookies other apps on the same host may set beside ours: a JSON value, a stray quote, a space in
# a name. Python's SimpleCookie stops reading at the first of them; a browser sends them all.
ODD_COOKIES = ['prefs={"theme":"dark"}', 'note="unclosed', "bad name=1"]


@pytest.mark.parametrize("odd", ODD_COOKIES)
async def test_a_login_counts_the_same_on_every_path_whatever_cookies_come_first(
        logged_in: Env, odd: str) -> None:
    """Quart's routes, the /devices fast path, Socket.IO and /frames read one Cookie header alike."""
    base = logged_in.base
    header = f"{odd}; {logged_in.cookie}; appliance_session=second.ignored"
    fast = logged_in.app.fast_devices
    before = fast.answered
    async with httpx.AsyncClient(timeout=10) as tab:
        assert (await tab.get(f"{base}/devices", headers={"Cookie": header})).status_code == 200
        assert fast.answered == before + 1
        assert (await tab.get(f"{base}/api/session", headers={"Cookie": header})).status_code == 200
    # By hand: python-socketio's client would itself re-read the header with SimpleCookie.
    async with ws_connect(f"{base.replace('http', 'ws', 1)}/socket.io/?EIO=4&transport=websocket",
                          open_timeout=10, additional_headers={"Cookie": header, "Origin": base}
                          ) as engine_io:
        assert str(await asyncio.wait_for(engine_io.recv(), 10)).startswith("0{")  # open
        await engine_io.send("40")  # Socket.IO connect, default namespace
        answer = str(await asyncio.wait_for(engine_io.recv(), 10))
        assert answer.startswith("40{"), f"the Socket.IO connect was refused: {answer}"
    async with ws_connect(base.replace("http", "ws", 1) + "/frames", open_timeout=10,
                          additional_headers={"Cookie": header, "Origin": base}) as viewer:
        assert viewer.protocol.state.name == "OPEN"
