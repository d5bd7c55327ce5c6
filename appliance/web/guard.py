"""Security by default: every route needs a logged-in user, unless marked otherwise.

``@public`` opens a route to everyone (only /health, the login page and the login call);
``@token_allowed`` also accepts a publisher token (``Authorization: Bearer <token>``).
A test walks the URL map and checks exactly which routes are public.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from quart import Quart, current_app, g, redirect, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import current_user

from appliance.auth.accounts import PublisherToken, User, check_token, user_for_session
from appliance.auth.tokens import bearer_token
from appliance.services import Services
from appliance.web.context import services
from appliance.web.errors import json_error

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC_ATTR: Final = "_appliance_public"
TOKEN_ATTR: Final = "_appliance_token_allowed"  # noqa: S105 - an attribute name
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def public(func: F) -> F:
    setattr(func, PUBLIC_ATTR, True)
    return func


def token_allowed(func: F) -> F:
    setattr(func, TOKEN_ATTR, True)
    return func


def is_public(endpoint: str, view: Callable[..., Any]) -> bool:
    # Static files are public: the login page needs its stylesheet before anyone logs in.
    return endpoint == "static" or bool(getattr(view, PUBLIC_ATTR, False))


def current_account() -> User | None:
    user: User | None = g.get("appliance_user")
    return user


def current_publisher() -> PublisherToken | None:
    token: PublisherToken | None = g.get("appliance_publisher")
    return token


def _wants_html() -> bool:
    accept = request.accept_mimetypes
    return request.method == "GET" and accept.best_match(["application/json", "text/html"]) == (
        "text/html"
    )


def origin_allowed(origin: str, host_url: str, public_origins: tuple[str, ...]) -> bool:
    """The Origin of a browser request must be our own host or a configured public origin."""
    own = urlsplit(host_url)
    return origin == f"{own.scheme}://{own.netloc}" or origin in public_origins


async def session_user(ctx: Services, auth_id: str | None) -> User | None:
    """The user of a live login session (from memory, SessionCache); asking counts as use."""
    return await user_for_session(
        ctx.db, auth_id, now=ctx.clock.wall(),
        idle=timedelta(seconds=ctx.settings.session_idle_timeout_s), cache=ctx.sessions)


async def _guard() -> ResponseReturnValue | None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:  # 404/405: let the router answer
        return None
    ctx = services()
    g.appliance_user = await session_user(ctx, current_user.auth_id)
    if g.appliance_user is not None and request.method in UNSAFE_METHODS:
        origin = request.headers.get("Origin")
        if origin and not origin_allowed(origin, request.host_url, ctx.settings.public_origins):
            return json_error(403, "bad_origin", f"requests from {origin} are not accepted")
    if is_public(request.endpoint or "", view) or g.appliance_user is not None:
        return None
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None and getattr(view, TOKEN_ATTR, False):
        g.appliance_publisher = await check_token(ctx.db, token, now=ctx.clock.wall())
        if g.appliance_publisher is not None:
            return None
        return json_error(401, "bad_token", "that publisher token is not valid; create one with "
                          "`appliance token add NAME`")
    if _wants_html():
        return redirect(url_for("auth.login_page", next=request.full_path.rstrip("?")))
    return json_error(
        401, "unauthorized", "log in first (POST /api/session or the /login page)"
        + (" or send Authorization: Bearer <publisher token>" if getattr(view, TOKEN_ATTR, False)
           else ""),
    )


def install(app: Quart) -> None:
    app.before_request(_guard)
