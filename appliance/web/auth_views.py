"""Login and logout: the HTML form and the JSON session API."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from quart import Blueprint, Response, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import AuthUser, current_user, login_user, logout_user
from quart_schema import hide, validate_request, validate_response
from werkzeug.datastructures import MultiDict

from appliance import schema
from appliance.auth.accounts import User, authenticate, end_session, start_session
from appliance.auth.throttle import client_key
from appliance.web.context import services
from appliance.web.errors import json_error
from appliance.web.guard import current_account, public
from appliance.web.openapi import document_errors

_LOGGER = logging.getLogger(__name__)
blueprint = Blueprint("auth", __name__)


class LoginFailed(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


async def _authenticate(username: str, password: str) -> User:
    """Check credentials with throttling per client (IPv6: its /64) and per user name.

    The attempt is counted before the password is hashed, so concurrent guesses cannot all get
    in while the first check runs (auth/throttle.py has the rules).
    """
    ctx = services()
    now = ctx.clock.monotonic()
    attempt = ctx.throttle.begin(client_key(request.remote_addr), f"user:{username.lower()}", now)
    if isinstance(attempt, int):
        msg = f"too many failed logins; try again in {attempt} s"
        raise LoginFailed(429, "too_many_attempts", msg, attempt)
    user = await authenticate(ctx.db, username, password)
    if user is None:
        _LOGGER.info("Failed login for %r from %s", username[:64], request.remote_addr)
        raise LoginFailed(401, "bad_credentials", "wrong user name or password")
    ctx.throttle.succeeded(attempt)
    login_user(AuthUser(await start_session(ctx.db, user, now=ctx.clock.wall())))
    return user


def _safe_next(target: str | None) -> str:
    """Only redirect to our own paths after login (no open redirect).

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so ``/<TAB>/evil``
    means ``//evil``: any control character, space or backslash makes the target untrusted.
    """
    if (target and target.startswith("/") and not target.startswith("//")
            and not any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in target)):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("pages.index")


@blueprint.get("/login")
@hide
@public
async def login_page() -> str:
    return await render_template("login.html", next=request.args.get("next", ""), error=None)


@blueprint.post("/login")
@hide
@public
async def login_form() -> ResponseReturnValue:
    form: MultiDict[str, str] = await request.form
    username, password = form.get("username", ""), form.get("password", "")
    next_url = form.get("next", "")
    try:
        if not username or not password:
            raise LoginFailed(400, "missing", "enter a user name and a password")
        await _authenticate(username, password)
    except LoginFailed as exc:
        page = await render_template("login.html", next=next_url, error=str(exc))
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return page, exc.status, headers
    return redirect(_safe_next(next_url))


@blueprint.post("/logout")
@hide
async def logout_form() -> ResponseReturnValue:
    await end_session(services().db, current_user.auth_id)
    services().sessions.ended()
    logout_user()
    return redirect(url_for("auth.login_page"))


@blueprint.post("/api/session")
@public
@validate_request(schema.LoginRequest)
@document_errors(400, 401, 422, 429)
@validate_response(schema.SessionInfo)
async def session_login(data: schema.LoginRequest) -> Response | schema.SessionInfo:
    """Log in: the answer sets the session cookie."""
    try:
        user = await _authenticate(data.username, data.password)
    except LoginFailed as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return json_error(exc.status, exc.code, str(exc), **headers)
    return schema.SessionInfo(username=user.username, id=user.id)


@blueprint.get("/api/session")
@document_errors(401)
@validate_response(schema.SessionInfo)
async def session_info() -> schema.SessionInfo:
    user = current_account()
    assert user is not None  # noqa: S101 - the guard lets only logged-in users reach this
    return schema.SessionInfo(username=user.username, id=user.id)


@blueprint.delete("/api/session")
@document_errors(401)
@validate_response(schema.Done)
async def session_logout() -> schema.Done:
    """Log out: this session ends on the server too (the old cookie stops working)."""
    await end_session(services().db, current_user.auth_id)
    services().sessions.ended()
    logout_user()
    return schema.Done(message="logged out")
