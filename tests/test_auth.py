"""Auth: password hashing, throttling, tokens, the secret key, and that every route is guarded."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from helpers import FakeClock, make_settings, running_server
from pydantic import ValidationError

from appliance import firstboot
from appliance.app import create_app
from appliance.auth import accounts, secret_key
from appliance.auth.passwords import hash_password, verify_password
from appliance.auth.policy import PolicyError, check_name, check_password
from appliance.auth.throttle import LoginThrottle
from appliance.auth.tokens import bearer_token, new_token, token_hash
from appliance.errors import ConfigError
from appliance.schema import NewToken, NewUser
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


def test_throttle_counts_failures_in_a_sliding_window() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60)
    keys = ["client:1.2.3.4", "user:alice"]
    for t in (0, 10, 20):
        assert throttle.retry_after(keys, t) == 0
        throttle.failed(keys, t)
    assert throttle.retry_after(keys, 21) == 39
    assert throttle.retry_after(["user:alice"], 21) == 39
    assert throttle.retry_after(["user:bob"], 21) == 0
    assert throttle.retry_after(keys, 60.5) == 0  # the first failure left the window
    throttle.succeeded(["user:alice"])
    assert throttle.retry_after(["user:alice"], 30) == 0


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


async def test_password_change_invalidates_existing_sessions(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    user = await accounts.add_user(db, "alice", "first password", now=NOW)
    sid = accounts.session_id(user)
    assert await accounts.user_for_session(db, sid) == user
    await accounts.set_password(db, "alice", "second password")
    assert await accounts.user_for_session(db, sid) is None
    assert await accounts.user_for_session(db, "garbage") is None
    with pytest.raises(PolicyError, match="1-64 letters"):
        await accounts.add_user(db, "bad name!", "some password", now=NOW)
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
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "style.css" if m[1] == "filename"
                          else "x", rule)
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
