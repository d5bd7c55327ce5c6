"""make fuzz: schemathesis against the served OpenAPI document (anonymously, with a login, with a
publisher token; every check), then the Socket.IO fuzzer (sio_fuzz.py), against `appliance serve`
on loopback with a fresh data directory. Then: the server's log has no traceback and no 5xx,
`appliance db check` says ok, and every stored row passes the rules its route applies.

Exit status 0 only when all of that holds; the time of each part is printed."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "bench"))
import relay_bench as rb  # the server process, a user and a token through the real CLI
import sio_fuzz

from appliance import schema
from appliance.auth.policy import PolicyError, check_name
from appliance.relay.frames import RelayInputError, image_mime

REPO = rb.REPO
# Routes left out of the runs, each for a reason the fuzzer cannot work around:
EXCLUDED = {
    # it makes the app dial the address given (tests reach loopback only)
    "/api/printer/address": "PUT",
    # logging out or deleting the fuzzer's own user ends the run's login
    "/api/session": "DELETE",
    "/logout": "POST",  # (a form route, not in the document; here in case it is added)
}


def _schemathesis(base: str, label: str, headers: dict[str, str], examples: int,
                  report: Path, document: Path) -> int:
    # The credentials are the run's (headers), so schemathesis does not generate its own.
    argv = [str(Path(sys.executable).parent / "schemathesis"), "run", str(document), "--url", base,
            "--generation-with-security-parameters", "false",
            "--checks", "all", "--max-examples", str(examples), "--seed", "13",
            "--suppress-health-check", "all", "--report", "junit",
            "--report-junit-path", str(report / f"schemathesis-{label}.xml"),
            "--request-timeout", "20", "--no-color"]
    for path, method in EXCLUDED.items():
        argv += ["--exclude-name", f"{method} {path}"]
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    started = time.monotonic()
    result = subprocess.run(argv, check=False, cwd=REPO, capture_output=True, text=True)
    tail = "\n".join(result.stdout.splitlines()[-40:])
    print(f"--- schemathesis {label}: exit {result.returncode}, "
          f"{time.monotonic() - started:.0f} s\n{tail}\n{result.stderr[-2000:]}", flush=True)
    return result.returncode


def _stored_rows_problems(db: Path) -> list[str]:
    """Every stored row checked by the rule its route applies (the schema's own models)."""
    problems: list[str] = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        for temperature, humidity in con.execute("SELECT temperature, humidity FROM temphum"):
            try:
                schema.TEMPHUM_EVENT.validate_python({"temperature": temperature,
                                                      "humidity": humidity})
            except ValueError as exc:
                problems.append(f"temphum row {temperature}, {humidity}: {exc}")
        for (status,) in con.execute("SELECT status FROM status"):
            try:
                schema.STATUS_EVENT.validate_python({"status": status})
            except ValueError as exc:
                problems.append(f"status row {status!r}: {exc}")
        for mime, image in con.execute("SELECT mime, image FROM images"):
            try:
                if image_mime(bytes(image)) != mime:
                    problems.append(f"an image stored as {mime} is not")
            except RelayInputError as exc:
                problems.append(f"an image row: {exc}")
        for table in ("users", "publisher_tokens"):
            column = "username" if table == "users" else "name"
            for (name,) in con.execute(f"SELECT {column} FROM {table}"):  # noqa: S608 - fixed
                try:
                    check_name(name)
                except PolicyError as exc:
                    problems.append(f"{table} row {name!r}: {exc}")
        counts = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
                  for t in ("users", "publisher_tokens", "temphum", "status", "images")}
    print(f"stored rows: {counts}")
    return problems


def _log_problems(log: Path) -> list[str]:
    text = log.read_text(errors="replace")
    bad = [line for line in text.splitlines()
           if "Traceback" in line or " ERROR " in line or "Unhandled" in line]
    return bad[:20]


async def _login(base: str) -> str:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{base}/api/session",
                                   json={"username": "bench", "password": rb.PASSWORD})
        answer.raise_for_status()
        return f"appliance_session={client.cookies['appliance_session']}"


async def run(args: argparse.Namespace, work: Path) -> int:
    token = rb.prepare_ours(work)
    data = work / "data"
    port = rb.free_port()
    base = f"http://127.0.0.1:{port}"
    # No simulated beacons: bumble (the simulation's BLE stack, not the appliance) logs errors of
    # its own when the fuzzer's pair and unpair calls race its GATT links.
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data), "APPLIANCE_CONFIG": str(work / "none.toml"),
           "APPLIANCE_RADIO": "virtual", "APPLIANCE_VIRTUAL_BEACONS": "0",
           "APPLIANCE_LOG_LEVEL": "INFO"}
    log = work / "server.log"
    failures: list[str] = []
    async with rb.spawned([sys.executable, "-m", "appliance", "serve", "--port", str(port)],
                          env=env, health=f"{base}/health", log=log):
        cookie = await _login(base)
        document = work / "openapi.json"  # it needs a login too, like every route but /health
        async with httpx.AsyncClient(headers={"Cookie": cookie}) as client:
            document.write_bytes((await client.get(f"{base}/openapi.json")).content)
        # The login run goes last: its stateful phase may revoke the token and delete users.
        runs = {"anonymous": {}, "token": {"Authorization": f"Bearer {token}"},
                "login": {"Cookie": cookie, "Origin": base}}
        started = time.monotonic()
        found = await sio_fuzz.fuzz(base, cookie=cookie, token=token, count=args.sio_examples)
        print(f"=== Socket.IO fuzzer: {found.sent} messages, {len(found.problems)} problems, "
              f"{time.monotonic() - started:.0f} s", flush=True)
        failures += found.problems
        for label, headers in runs.items():
            started = time.monotonic()
            code = await asyncio.to_thread(_schemathesis, base, label, headers, args.examples,
                                           args.out, document)
            if code != 0:
                failures.append(f"schemathesis {label} found problems (exit {code})")
            print(f"=== schemathesis {label} took {time.monotonic() - started:.0f} s", flush=True)
        async with httpx.AsyncClient() as client:
            if (await client.get(f"{base}/health")).status_code != 200:
                failures.append("/health does not answer 200 after the fuzzing")
    shutil.copy(log, args.out / "server.log")
    failures += [f"server log ({args.out / 'server.log'}): {line}" for line in _log_problems(log)]
    check = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "appliance", "db", "check"], env=env,
        capture_output=True, text=True, check=False, cwd=REPO)
    print(f"appliance db check: {check.stdout.strip()}")
    if check.returncode != 0 or "integrity ok" not in check.stdout:
        failures.append(f"appliance db check: {check.stdout} {check.stderr}")
    failures += _stored_rows_problems(data / "appliance.db")
    for failure in failures:
        print(f"PROBLEM: {failure}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=25,
                        help="schemathesis examples per operation and run")
    parser.add_argument("--sio-examples", type=int, default=60,
                        help="Socket.IO payloads per event and role")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "fuzz")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="appliance-fuzz-") as work:
        status = asyncio.run(run(args, Path(work)))
    print(f"make fuzz took {time.monotonic() - started:.0f} s: "
          f"{'ok' if status == 0 else 'PROBLEMS FOUND'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
