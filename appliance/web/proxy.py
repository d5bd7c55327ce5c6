"""Believe X-Forwarded-For/-Proto only from trusted proxies (nginx on loopback or the socket)."""

from __future__ import annotations

from typing import Any, cast

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope


class TrustedProxyHeaders:
    """ASGI middleware: rewrite client and scheme from nginx's headers when nginx sent them."""

    def __init__(self, app: ASGIFramework, trusted: tuple[str, ...]) -> None:
        self.app = app
        self.trusted = frozenset(trusted)

    def _is_trusted(self, scope: dict[str, Any]) -> bool:
        client = scope.get("client")
        if not client:  # a unix socket has no peer address
            return "unix" in self.trusted
        return str(client[0]) in self.trusted

    async def __call__(self, asgi_scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        scope = cast(dict[str, Any], asgi_scope)
        if scope["type"] in ("http", "websocket") and self._is_trusted(scope):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            scope = dict(scope)
            proto = headers.get("x-forwarded-proto", "").strip().lower()
            if proto in ("http", "https"):
                ws = scope["type"] == "websocket"
                scope["scheme"] = {"http": "ws", "https": "wss"}[proto] if ws else proto
            forwarded = headers.get("x-forwarded-for", "")
            if forwarded:
                # The right-most address is the one our own proxy saw; the rest is client-supplied.
                client = forwarded.split(",")[-1].strip()
                if client:
                    scope["client"] = (client, 0)
        await self.app(scope, receive, send)  # type: ignore[arg-type]
