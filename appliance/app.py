"""create_app(settings) builds everything: store, presence service, web; nothing is global."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import socketio
from quart import Quart, Response, request
from quart_auth import QuartAuth
from quart_schema import QuartSchema

from appliance import __version__
from appliance.auth import secret_key
from appliance.auth.throttle import LoginThrottle
from appliance.clock import Clock, SystemClock
from appliance.presence.radio import BleakRadio, Radio
from appliance.presence.service import PresenceService
from appliance.printer.service import PrinterService
from appliance.relay.service import RelayService
from appliance.relay.socket import RelayChannels
from appliance.settings import Settings
from appliance.store import timelapse as timelapse_store
from appliance.store import users as user_store
from appliance.store.db import Database
from appliance.web import (
    admin_api,
    auth_views,
    errors,
    guard,
    pages,
    presence_api,
    printer_api,
    publish_api,
    timelapse_api,
)
from appliance.web.context import Services
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


class _Auth(QuartAuth):
    """quart-auth with a Secure cookie exactly when the request came over https."""

    async def after_request(self, response: Response) -> Response:
        # No await between setting and the base class using it, so requests cannot interleave.
        self.cookie_secure = request.is_secure
        return await super().after_request(response)


def make_radio(settings: Settings) -> Radio:
    if settings.radio == "bleak":
        return BleakRadio(settings.adapter, passive=settings.passive_scan)
    from appliance.presence.virtual_radio import VirtualRadio

    if settings.virtual_beacon_kind == "sketch":
        from appliance.presence.sketch_beacon import SIM_BINARY, SketchBeaconFactory

        binary = Path(settings.virtual_beacon_sim) if settings.virtual_beacon_sim else SIM_BINARY
        return VirtualRadio(settings.virtual_beacons, beacon_factory=SketchBeaconFactory(binary))
    return VirtualRadio(settings.virtual_beacons)


def create_app(
    settings: Settings, *, radio: Radio | None = None, clock: Clock | None = None,
    tick_s: float | None = None,
) -> Any:
    """The ASGI application. ``radio`` and ``clock`` are injectable for tests."""
    clock = clock or SystemClock()
    app = Quart("appliance", template_folder="web/templates", static_folder="web/static")
    app.config.update(
        SECRET_KEY=secret_key.load_or_create(settings.data_dir),
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_COOKIE_HTTP_ONLY=True,
        QUART_AUTH_COOKIE_NAME="appliance_session",
        QUART_AUTH_DURATION=30 * 24 * 3600,
        MAX_CONTENT_LENGTH=settings.image_max_bytes + 64 * 1024,
    )
    auth = _Auth(app)
    QuartSchema(
        app, openapi_path="/openapi.json", swagger_ui_path=None, redoc_ui_path=None,
        scalar_ui_path=None, info={"title": "Appliance", "version": __version__},
    )
    errors.register(app)
    guard.install(app)
    for module in (auth_views, pages, presence_api, timelapse_api, publish_api, admin_api,
                   printer_api):
        app.register_blueprint(module.blueprint)

    @app.after_request
    async def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.before_serving
    async def startup() -> None:
        db = await Database.open(settings.db_path)
        chosen = radio if radio is not None else make_radio(settings)
        presence = PresenceService(
            settings, db, chosen, clock, radio_name=settings.radio,
            **({"tick_s": tick_s} if tick_s else {}),
        )
        relay = RelayService(settings, db, clock)

        async def image_delay() -> float:
            return (await timelapse_store.get(db)).image_delay

        app.extensions["appliance"] = Services(
            settings=settings, clock=clock, db=db, presence=presence,
            relay=relay, printer=PrinterService(settings, relay, clock, image_delay=image_delay),
            throttle=LoginThrottle(
                max_failures=settings.login_max_failures,
                window_s=settings.login_failure_window_s,
            ),
            browsers=lambda: channels.browser_count, publishers=lambda: channels.publisher_count,
        )
        await presence.start()
        await app.extensions["appliance"].relay.start()
        channels.start()
        await app.extensions["appliance"].printer.start()
        if not await user_store.all_users(db):
            _LOGGER.warning("No users yet: create one with `appliance user add NAME`")
        _LOGGER.info("Appliance %s ready (radio: %s, data: %s)", __version__, settings.radio,
                     settings.data_dir)

    @app.after_serving
    async def shutdown() -> None:
        ctx: Services = app.extensions["appliance"]
        if ctx.printer:
            await ctx.printer.stop()
        await channels.stop()
        await ctx.relay.stop()
        await ctx.presence.stop()
        await ctx.db.close()

    channels = RelayChannels(
        settings, lambda: app.extensions["appliance"],
        lambda cookie: auth.load_token(cookie, app),
    )
    combined = socketio.ASGIApp(channels.sio, other_asgi_app=app, socketio_path="socket.io")
    asgi = TrustedProxyHeaders(combined, settings.trusted_proxies)
    asgi.quart = app  # type: ignore[attr-defined]
    asgi.channels = channels  # type: ignore[attr-defined]
    return asgi
