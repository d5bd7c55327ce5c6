"""The Host header check against DNS rebinding (issue 13, finding 8).

A page on evil.example whose name the attacker re-points at the appliance's LAN address would make
a logged-in maker's browser talk to the appliance as evil.example: same-origin for that page, so
its origin checks pass. Its requests still say ``Host: evil.example``, so only names the appliance
answers to are served:

* the names in ``public_origins`` (the Cloudflare hostname, when configured);
* the machine's own name, bare and as ``NAME.local`` (mDNS), and ``localhost``;
* any IP address literal: a browser sends one only when the page itself was loaded from that
  address, so it cannot be a rebinding (which needs a name the attacker controls);
* any name over https while ``public_origins`` is empty: on the appliance only the tunnel is https
  (nginx says https only for cloudflared's connections), and Cloudflare routes to the tunnel only
  the hostnames configured for it, so the check cannot lock the tunnel out before its name is set.

Everything else gets 421 with a message that says what to use instead.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from appliance.settings import Settings

MISDIRECTED = 421  # RFC 9110: this server does not answer for that name


def host_name(host: str) -> str:
    """The name of a Host header: lower case, without its port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """ASGI middleware: serve only requests whose Host names this appliance (see the module)."""

    def __init__(self, app: ASGIFramework, settings: Settings) -> None:
        self.app = app
        self.public = frozenset(host_name(urlsplit(origin).netloc)
                                for origin in settings.public_origins)

    def allowed(self, name: str, *, https: bool) -> bool:
        own = socket.gethostname().lower()  # read each time: first boot may rename the machine
        return (name in self.public or name in (own, f"{own}.local", "localhost")
                or _is_address(name) or (https and not self.public))

    def refusal(self, name: str) -> str:
        own = socket.gethostname().lower()
        shown = "".join(c for c in name[:100] if c.isprintable()) or "(none)"
        return (f"this appliance does not answer to the name {shown}: use its address or "
                f"{own}.local, or add https://{shown} to public_origins if it is the appliance's "
                "public name")

    async def __call__(self, asgi_scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        scope = cast(dict[str, Any], asgi_scope)
        if scope["type"] not in ("http", "websocket"):
            await self.app(asgi_scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"host"),
                    "")
        name = host_name(host)
        if name and self.allowed(name, https=scope.get("scheme") in ("https", "wss")):
            await self.app(asgi_scope, receive, send)
            return
        out = cast(Callable[[dict[str, Any]], Awaitable[None]], send)  # events as plain dicts
        body = json.dumps({"error": "unknown_host", "message": self.refusal(name)}).encode()
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        kind = "http" if scope["type"] == "http" else "websocket.http"
        if kind == "websocket.http" and "websocket.http.response" not in scope.get(
                "extensions", {}):
            await out({"type": "websocket.close", "code": 1008})  # policy violation
            return
        await out({"type": f"{kind}.response.start", "status": MISDIRECTED, "headers": headers})
        await out({"type": f"{kind}.response.body", "body": body})
