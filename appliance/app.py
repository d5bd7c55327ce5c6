"""create_app(settings) builds everything: store, presence service, web; nothing is global."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, cast

import socketio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from itsdangerous import BadSignature, SignatureExpired
from quart import Quart, Response, current_app, request
from quart.sessions import SecureCookieSessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket
from quart_auth import QuartAuth
from quart_schema import QuartSchema
from werkzeug.http import parse_cookie
from werkzeug.wrappers import Response as WerkzeugResponse

from appliance import __version__, schema
from appliance.auth import accounts, secret_key
from appliance.auth.sessions import SessionCache
from appliance.auth.throttle import LoginThrottle
from appliance.clock import Clock, SystemClock
from appliance.mqtt.service import MqttService
from appliance.presence.radio import Radio, make_radio
from appliance.presence.service import PresenceService
from appliance.printer.service import PrinterService
from appliance.relay.packets import QuietProtocolErrors
from appliance.relay.service import RelayService
from appliance.relay.socket import BROWSERS, RelayChannels
from appliance.relay.wire import WithFrames
from appliance.services import Services
from appliance.settings import Settings
from appliance.store.db import Database
from appliance.timelapse import schema as timelapse_schema
from appliance.timelapse.service import TimelapseService, TimelapseView
from appliance.web import (
    admin_api,
    auth_views,
    errors,
    guard,
    pages,
    presence_api,
    printer_api,
    publish_api,
    scanners_api,
    timelapse_api,
    timelapse_videos_api,
)
from appliance.web.context import EXTENSION_KEY
from appliance.web.fast import FastDevices
from appliance.web.hosts import HostCheck
from appliance.web.openapi import Provider
from appliance.web.proxy import TrustedProxyHeaders

_LOGGER = logging.getLogger(__name__)

SECURITY_HEADERS = {
    # No inline scripts or styles anywhere; everything is served by the app itself.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


# Only these may be cached: the same for everyone, and none of them secret.
CACHEABLE_PREFIXES: Final = ("/static/", "/health")
# To browsers on every change of a timelapse recording: a GET /api/timelapses entry, or
# {id, removed: true}.
TIMELAPSE_OUT: Final = "timelapse2v"


class _Auth(QuartAuth):
    """quart-auth with a Secure cookie exactly when the request came over https, and each
    cookie's signature checked once.

    itsdangerous builds a serializer and checks a SHA-512 HMAC on every call: a quarter of a
    logged-in GET's time (issue 14's profile). A cookie that verified is remembered with the
    moment it expires (its own timestamp + the session's maximum age), so the same bytes are not
    checked again before then. Whether its session still stands is asked on every request and
    every socket recheck (SessionCache), so a logout or a password change still ends it at once.
    """

    VERIFIED_MAX: Final = 1024  # remembered cookies; all are forgotten when it fills

    def __init__(self, app: Quart) -> None:
        self._verified: dict[str, tuple[str, float]] = {}
        super().__init__(app)

    def load_token(self, token: str, app: Quart | None = None) -> str | None:
        hit = self._verified.get(token)
        if hit is not None and time.time() <= hit[1]:
            return hit[0]
        app = app or current_app
        keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key]
        try:
            auth_id, signed_at = self.serializer_class(keys, cast(str, self.salt)).loads(
                token, max_age=self.duration, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            self._verified.pop(token, None)
            return None
        if len(self._verified) >= self.VERIFIED_MAX:
            self._verified.clear()
        expires = signed_at.timestamp() + self.duration if self.duration else float("inf")
        self._verified[token] = (auth_id, expires)
        return str(auth_id)

    def session_of(self, cookie_header: str, app: Quart) -> str | None:
        """The auth id in a raw Cookie header's login cookie, for the paths outside Quart (the
        Socket.IO and ``/frames`` handshakes, the ``/devices`` fast path). Read as a Quart request
        reads it (werkzeug's lenient parser; the first cookie of the name), so a login counts
        the same on every path, whatever other cookies the browser holds for this host."""
        cookie = parse_cookie(cookie_header).get(cast(str, self.cookie_name))
        return self.load_token(cookie, app) if cookie else None

    async def after_request(self, response: Response) -> Response:
        # No await between setting and the base class using it, so requests cannot interleave.
        self.cookie_secure = request.is_secure
        return await super().after_request(response)


class _NoCookieSession(SecureCookieSessionInterface):
    """Quart's own signed-cookie session, unused (a login is quart-auth's cookie): opening it
    built an itsdangerous serializer on every request, an eighth of a logged-in GET (issue 14's
    profile). Quart gives each request a NullSession instead, which refuses writes."""

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> None:
        return None

    async def save_session(self, app: Quart, session: SessionMixin,
                           response: Response | WerkzeugResponse | None) -> None:
        return None


class Appliance:
    """The ASGI application create_app builds, and the parts of it a caller may reach."""

    def __init__(self, quart: Quart, channels: RelayChannels, fast: FastDevices,
                 asgi: TrustedProxyHeaders) -> None:
        self.quart = quart  # the web app: routes, the OpenAPI document
        self.channels = channels  # the Socket.IO server
        self.fast_devices = fast  # GET /devices before Quart
        # What hypercorn serves: /frames, Socket.IO, GET /devices and Quart behind the Host check
        # and the proxy headers.
        self._asgi = asgi

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        await self._asgi(scope, receive, send)

    @property
    def services(self) -> Services:
        """The running services; they exist from start-up (hypercorn's lifespan) on."""
        return running_services(self.quart)


def running_services(app: Quart) -> Services:
    running: Services | None = app.extensions.get(EXTENSION_KEY)
    if running is None:
        msg = "the appliance has not started yet: serve it (hypercorn) before asking"
        raise RuntimeError(msg)
    return running


def create_app(
    settings: Settings, *, radio: Radio | None = None, clock: Clock | None = None,
) -> Appliance:
    """The ASGI application. ``radio`` and ``clock`` are injectable for tests."""
    clock = clock or SystemClock()
    app = Quart("appliance", template_folder="web/templates", static_folder="web/static")
    app.config.update(
        SECRET_KEY=secret_key.load_or_create(settings.data_dir),
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_COOKIE_HTTP_ONLY=True,
        QUART_AUTH_COOKIE_NAME="appliance_session",
        QUART_AUTH_DURATION=int(accounts.SESSION_MAX_AGE.total_seconds()),
        MAX_CONTENT_LENGTH=settings.image_max_bytes + 64 * 1024,
    )
    app.session_interface = _NoCookieSession()
    auth = _Auth(app)
    QuartSchema(
        app, openapi_path="/openapi.json", swagger_ui_path=None, redoc_ui_path=None,
        scalar_ui_path=None, info={"title": "Appliance", "version": __version__},
        openapi_provider_class=Provider,
    )
    errors.register(app)
    guard.install(app)
    for module in (auth_views, pages, presence_api, timelapse_api, publish_api, admin_api,
                   printer_api, timelapse_videos_api, scanners_api):
        app.register_blueprint(module.blueprint)

    @app.after_request
    async def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.path.startswith(CACHEABLE_PREFIXES):
            # Pages and answers carry users, tokens and presence: no cache (browser or proxy)
            # keeps them for the next person at this machine.
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.before_serving
    async def startup() -> None:
        db = await Database.open(settings.db_path,
                                 reserve_bytes=settings.storage_reserve_mib * 1024 * 1024)
        chosen = radio if radio is not None else make_radio(settings)
        presence = PresenceService(settings, db, chosen, clock, radio_name=settings.radio)
        relay = RelayService(settings, db, clock)
        printer = PrinterService(settings, relay, clock, time_format=schema.api_time)
        services = app.extensions[EXTENSION_KEY] = Services(
            settings=settings, clock=clock, db=db, sessions=SessionCache(db), presence=presence,
            relay=relay, printer=printer,
            timelapses=TimelapseService(settings, db, relay, printer, clock),
            mqtt=MqttService(settings, db, presence, printer, clock),
            throttle=LoginThrottle(
                max_failures=settings.login_max_failures,
                window_s=settings.login_failure_window_s,
            ),
            browsers=lambda: channels.browser_count, publishers=lambda: channels.publisher_count,
        )
        await presence.start()
        await services.relay.start()
        channels.start()
        await services.printer.start()
        services.timelapses.subscribe(timelapse_events.put_nowait)
        await services.timelapses.start()
        await services.mqtt.start()
        timelapse_sender.append(asyncio.create_task(send_timelapse_events()))
        if not await accounts.all_users(db):
            _LOGGER.warning("No users yet: create one with `appliance user add NAME`")
        _LOGGER.info("Appliance %s ready (radio: %s, data: %s)", __version__, settings.radio,
                     settings.data_dir)

    @app.after_serving
    async def shutdown() -> None:
        ctx = running_services(app)
        for task in timelapse_sender:
            task.cancel()
        await ctx.mqtt.stop()
        await ctx.timelapses.stop()
        await ctx.printer.stop()
        await channels.stop()
        await ctx.relay.stop()
        await ctx.presence.stop()
        await ctx.db.close()

    # timelapse2v: every change of a recording to the browsers, in order.
    timelapse_events: asyncio.Queue[TimelapseView | int] = asyncio.Queue()
    timelapse_sender: list[asyncio.Task[None]] = []

    async def send_timelapse_events() -> None:
        while True:
            what = await timelapse_events.get()
            await channels.sio.emit(TIMELAPSE_OUT, timelapse_schema.event(what), room=BROWSERS)

    def session_of(cookie_header: str) -> str | None:
        return auth.session_of(cookie_header, app)

    channels = RelayChannels(settings, lambda: running_services(app), session_of)
    combined = WithFrames(QuietProtocolErrors(
        socketio.ASGIApp(channels.sio, other_asgi_app=app, socketio_path="socket.io"),
        channels.quiet_log), channels.wire)
    # Outermost the proxy headers (the client, http or https), then the Host check, for all.
    fast = FastDevices(combined, app, lambda: running_services(app), session_of, SECURITY_HEADERS)
    checked = HostCheck(fast, settings)
    return Appliance(app, channels, fast, TrustedProxyHeaders(checked, settings.trusted_proxies))
