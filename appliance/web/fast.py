"""``GET /devices`` with a live login cookie, answered before Quart.

The dashboard's scripts and the reference's clients poll it. Through Quart a logged-in GET
served about 0.3x the requests per second of a bare hypercorn app, and a one-route Quart
hello-world itself only 0.5-0.6x (make bench): the request context, the hooks and quart-schema
cost more than the answer. Here the common case (GET, no query string, no body, one Cookie
header whose session is live) gets exactly the answer Quart gives: the same JSON, the same
headers. Anything else (no cookie or an ended session, a publisher token, HEAD, a query
string) goes on to Quart, which answers it as it always has (401, the login redirect...). The
session is checked by the guard's own call (``guard.session_user``), from memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, cast

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Quart

from appliance import schema
from appliance.services import Services
from appliance.web.guard import session_user

PATH: Final = "/devices"


class FastDevices:
    """ASGI middleware: ``GET /devices`` for a live session here, everything else to ``app``."""

    def __init__(self, app: ASGIFramework, quart: Quart, services: Callable[[], Services],
                 session_of: Callable[[str], str | None], headers: dict[str, str]) -> None:
        self.app = app
        self._quart = quart
        self._services = services
        self._session_of = session_of  # a Cookie header -> the auth id of its login, or None
        self._headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                         for k, v in {**headers, "Cache-Control": "no-store"}.items()]
        self.answered = 0  # requests served here (the tests' proof that this path ran)

    def _cookie(self, scope: dict[str, Any]) -> str | None:
        """The Cookie header, when the request is one this path may answer."""
        if (scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != PATH
                or scope["query_string"]):
            return None
        cookies = []
        for key, value in scope["headers"]:
            key = key.lower()
            if key in (b"content-length", b"transfer-encoding"):
                return None  # a GET with a body: Quart's business
            if key == b"cookie":
                cookies.append(value)
        if len(cookies) != 1:
            return None
        return str(cookies[0], "latin-1")

    async def __call__(self, asgi_scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        scope = cast(dict[str, Any], asgi_scope)
        cookie = self._cookie(scope)
        auth_id = self._session_of(cookie) if cookie else None
        if auth_id is not None:
            ctx = self._services()
            if await session_user(ctx, auth_id) is not None:
                await self._answer(ctx, send)
                return
        await self.app(asgi_scope, receive, send)

    async def _answer(self, ctx: Services, send: ASGISendCallable) -> None:
        devices = schema.Devices.of(ctx.presence.devices(), ctx.presence.wall)
        # The JSON Quart writes for the route (quart-schema's model_dump, then app.json).
        body = (self._quart.json.dumps(devices.model_dump(), separators=(",", ":"))
                + "\n").encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), *self._headers]
        self.answered += 1
        await send({"type": "http.response.start", "status": 200, "headers": headers,
                    "trailers": False})
        await send({"type": "http.response.body", "body": body, "more_body": False})
