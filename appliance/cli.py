"""The one entry point: `appliance serve | user ... | token ... | scanner ... | db check`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.auth import accounts
from appliance.auth.policy import check_password
from appliance.clock import SystemClock
from appliance.errors import ApplianceError, ConfigError
from appliance.settings import Settings, load_settings
from appliance.store.db import Database
from appliance.store.migrations import LATEST

_LOGGER = logging.getLogger(__name__)


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(f"appliance: {line}\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__)
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("--config", type=Path, help="TOML settings file "
                        "(default: $APPLIANCE_CONFIG, else /etc/appliance/appliance.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the web app, the relay and the BLE scanner")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--unix-socket", help="listen on this unix socket instead of host:port")

    user = sub.add_parser("user", help="local user accounts").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    add = user.add_parser("add", help="create a user (asks for the password twice)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user.add_parser("list", help="list users")
    user.add_parser("del", help="delete a user").add_argument("name")
    passwd = user.add_parser("passwd", help="change a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    token = sub.add_parser("token", help="publisher tokens for cameras and sensors").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    token.add_parser("add", help="create a token and print it once").add_argument("name")
    token.add_parser("list", help="list tokens (never the tokens themselves)")
    token.add_parser("revoke", help="revoke a token").add_argument("name")

    scanner = sub.add_parser("scanner", help="satellite scanners (MQTT) in other rooms").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    scanner_add = scanner.add_parser("add", help="issue a scanner's credentials and print them once")
    scanner_add.add_argument("name", help="its id and MQTT user, e.g. workshop")
    scanner_add.add_argument("--area", help="the area its beacons are shown in (default: the name)")
    scanner.add_parser("list", help="list scanners (never their passwords)")
    scanner.add_parser("revoke", help="revoke a scanner: its sightings are dropped at once").add_argument(
        "name")

    pub = sub.add_parser("publish", help="send frames, readings and status to an appliance")
    pub.add_argument("--url", required=True, help="the appliance, e.g. http://printer.local")
    pub.add_argument("--token", help="publisher token (or set APPLIANCE_PUBLISH_TOKEN, which "
                     "keeps it out of the process list)")
    what = pub.add_mutually_exclusive_group()
    what.add_argument("--image", nargs="+", type=Path, metavar="FILE", help="send these files once")
    what.add_argument("--dir", type=Path, help="send the .jpg/.png files here, one per interval, "
                      "in name order, again and again (new files are picked up)")
    pub.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                     help="seconds between frames with --dir (default 10)")
    pub.add_argument("--temphum", metavar="T,H", help="temperature (°C) and humidity (%%)")
    pub.add_argument("--status", metavar="TEXT", help="printer status")
    pub.add_argument("--max-backoff", type=float, default=30.0, metavar="SECONDS",
                     help="longest wait between reconnects (default 30; doubling from 1 s)")
    pub.add_argument("--rounds", type=int, help=argparse.SUPPRESS)  # tests: stop after N rounds

    first = sub.add_parser("firstboot", help="apply the boot partition's appliance.toml (as root, "
                           "at boot; see the README)")
    first.add_argument("--file", type=Path, default=Path("/boot/firmware/appliance.toml"))

    printer = sub.add_parser("printer", help="the Bambu printer on the LAN").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    discover = printer.add_parser("discover", help="list printers announcing themselves "
                                  "(SSDP on UDP 2021): address, serial, model")
    discover.add_argument("--seconds", type=float, default=10.0, help="listen this long (default 10)")

    db = sub.add_parser("db", help="the database").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    db.add_parser("check", help="integrity check and schema version")
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            msg = "no terminal to ask for the password; pipe it in with --password-stdin"
            raise ApplianceError(msg)
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            msg = "the two passwords differ; run the command again"
            raise ApplianceError(msg)
    return check_password(password)  # a PolicyError is an ApplianceError: its message is shown


async def _with_db(settings: Settings, action: Callable[[Database], Awaitable[int]]) -> int:
    db = await Database.open(settings.db_path)
    try:
        return await action(db)
    finally:
        await db.close()


async def _user(args: argparse.Namespace, db: Database) -> int:
    if args.action == "add":
        await accounts.add_user(db, args.name, _read_password(args.password_stdin),
                                now=SystemClock().wall())
        _out(f"user {args.name} added")
    elif args.action == "passwd":
        await accounts.set_password(db, args.name, _read_password(args.password_stdin))
        _out(f"password of {args.name} changed; their other sessions are logged out")
    elif args.action == "del":
        await accounts.delete_user(db, args.name)
        _out(f"user {args.name} deleted")
    else:
        for user in await accounts.all_users(db):
            _out(f"{user.username}\tcreated {user.created_at:%Y-%m-%d %H:%M} UTC")
    return 0


async def _token(args: argparse.Namespace, db: Database) -> int:
    if args.action == "add":
        _record, token = await accounts.add_token(db, args.name, now=SystemClock().wall())
        _out(token)
        _err(f"token {args.name} created; it is shown only this once")
    elif args.action == "revoke":
        await accounts.revoke_token(db, args.name)
        _out(f"token {args.name} revoked")
    else:
        for record in await accounts.all_tokens(db):
            used = f"{record.last_used_at:%Y-%m-%d %H:%M}" if record.last_used_at else "never"
            _out(f"{record.name}\tcreated {record.created_at:%Y-%m-%d %H:%M}\tlast used {used}")
    return 0


async def _scanner(args: argparse.Namespace, db: Database) -> int:
    from appliance.auth import scanners

    if args.action == "add":
        password = await scanners.add_scanner(db, args.name, area=args.area, now=SystemClock().wall())
        _out(password)
        _err(f"scanner {args.name} created; its password is shown only this once. On the scanner: "
             f"role = \"scanner\", mqtt_url = \"mqtts://{args.name}@THIS-APPLIANCE:8883\", "
             "and the password in the file mqtt_password_file names (mode 0600)")
    elif args.action == "revoke":
        await scanners.revoke_scanner(db, args.name)
        _out(f"scanner {args.name} revoked")
    else:
        for record in await scanners.all_scanners(db):
            _out(f"{record.id}\tarea {record.area}\tcreated {record.created_at:%Y-%m-%d %H:%M}")
    return 0


async def _db_check(settings: Settings) -> int:
    if not settings.db_path.exists():
        _err(f"no database at {settings.db_path}; it is created when the app first starts")
        return 1
    db = await Database.open(settings.db_path, migrate=False)
    try:
        version = await db.schema_version()
        problems = await db.integrity_check()
    finally:
        await db.close()
    _out(f"schema version {version} (this appliance: {LATEST})")
    for problem in problems:
        _out(f"problem: {problem}")
    _out("integrity ok" if not problems else "integrity FAILED")
    return 0 if not problems else 1


async def _serve_scanner(settings: Settings) -> int:
    from appliance.mqtt.client import broker_of
    from appliance.mqtt.scanner import Scanner
    from appliance.presence.radio import make_radio

    broker = broker_of(settings)
    assert broker is not None  # noqa: S101 - load_settings requires mqtt_url for a scanner
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scanner = Scanner(settings, broker, make_radio(settings), SystemClock())
    _LOGGER.info("Scanner %s forwarding to %s", scanner.id, broker)
    await scanner.run(stop)
    _LOGGER.info("Stopped")
    return 0


def _no_client_transport() -> None:
    """The server makes no Socket.IO client connections, yet ``import socketio`` imports its
    client, whose Engine.IO transport imports aiohttp when it is installed (it is, for
    ``appliance publish``): 8 MB of RSS and 0.2 s of start-up on the bench (issue 14), for
    nothing. Marked absent in this process only, before anything imports socketio; nothing else
    here uses aiohttp (tests/test_cli.py checks the served process never loads it)."""
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]


async def _serve(settings: Settings) -> int:
    if settings.role == "scanner":
        return await _serve_scanner(settings)
    _no_client_transport()
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from appliance.app import create_app
    from appliance.relay.socket import transport_max_bytes

    app = create_app(settings)
    config = Config()
    config.websocket_max_message_size = transport_max_bytes(settings)
    config.bind = [f"unix:{settings.unix_socket}" if settings.unix_socket
                   else f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = settings.unix_socket or f"http://{settings.host}:{settings.port}"

    async def shutdown_trigger() -> None:
        await stop.wait()
        _LOGGER.info("Stopping")
        await app.channels.drop_transports()

    _LOGGER.info("Serving on %s", where)
    await serve(app, config, shutdown_trigger=shutdown_trigger)
    _LOGGER.info("Stopped")
    return 0


async def _publish(args: argparse.Namespace) -> int:
    from appliance.relay.publisher import Publisher, PublishPlan, parse_temphum

    token = args.token or os.environ.get("APPLIANCE_PUBLISH_TOKEN", "")
    if not token:
        msg = "no token: pass --token or set APPLIANCE_PUBLISH_TOKEN (`appliance token add NAME`)"
        raise ApplianceError(msg)
    if not (args.image or args.dir or args.temphum or args.status):
        msg = "nothing to send: give --image FILE..., --dir DIR, --temphum or --status"
        raise ApplianceError(msg)
    for path in args.image or ():
        if not path.is_file():
            msg = f"{path} is not a file"
            raise ApplianceError(msg)
    if args.interval <= 0:
        msg = "--interval must be more than 0 seconds"
        raise ApplianceError(msg)
    if not 0 < args.max_backoff <= 3600:
        msg = "--max-backoff must be more than 0 and at most 3600 seconds"
        raise ApplianceError(msg)
    plan = PublishPlan(
        url=args.url, token=token, images=args.image or (), directory=args.dir,
        interval_s=args.interval, temphum=parse_temphum(args.temphum) if args.temphum else None,
        status=args.status, max_attempts=None if args.dir else 5, rounds=args.rounds,
        backoff_max_s=args.max_backoff,
    )
    return await Publisher(plan, _out).run()


async def _discover(seconds: float) -> int:
    from appliance.printer.discover import SSDP_PORT, discover

    try:
        found = await discover(seconds)
    except OSError as exc:
        msg = f"cannot listen on UDP port {SSDP_PORT} ({exc}); is Bambu Studio running here?"
        raise ApplianceError(msg) from None
    if not found:
        _err(f"no printer announced itself within {seconds:g} s: is it on this network, with "
             "LAN mode on?")
        return 1
    for printer in found:
        _out(f"{printer.host}\t{printer.serial}\t{printer.model or '?'}\t{printer.name or ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "printer":  # needs no settings either
        logging.basicConfig(level=logging.WARNING)
        try:
            return asyncio.run(_discover(args.seconds))
        except ApplianceError as exc:
            _err(str(exc))
            return 1
        except KeyboardInterrupt:
            return 130
    if args.command == "publish":  # a client: it needs no settings or data dir
        logging.basicConfig(level=logging.WARNING)
        try:
            return asyncio.run(_publish(args))
        except ApplianceError as exc:
            _err(str(exc))
            return 1
        except KeyboardInterrupt:
            return 130
    try:
        overrides: dict[str, Any] = {}
        if args.command == "serve":
            overrides = {"host": args.host, "port": args.port, "unix_socket": args.unix_socket}
        settings = load_settings(args.config, **overrides)
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        if args.command == "serve":
            return asyncio.run(_serve(settings))
        if args.command == "db":
            return asyncio.run(_db_check(settings))
        if args.command == "firstboot":
            from appliance.firstboot import Target, apply_file

            if not args.file.is_file():
                _out(f"no {args.file}: nothing to apply")
                return 0
            apply_file(args.file, Target())
            return 0  # bad values are reported in the journal and on the dashboard
        handler = {"user": _user, "scanner": _scanner}.get(args.command, _token)
        return asyncio.run(_with_db(settings, lambda db: handler(args, db)))
    except ConfigError as exc:
        _err(str(exc))
        return 2
    except ApplianceError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
