"""The `appliance` command as a user runs it: a real process, a real database file."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import wait_for

from appliance.store.migrations import LATEST


def run(tmp_path: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
                "APPLIANCE_CONFIG": str(tmp_path / "none.toml"), **(env or {})}
    (tmp_path / "none.toml").touch()
    return subprocess.run([sys.executable, "-m", "appliance", *args], input=stdin, text=True,
                          capture_output=True, env=full_env, timeout=60, check=False)


def test_user_add_list_passwd_del(tmp_path: Path) -> None:
    added = run(tmp_path, "user", "add", "alice", "--password-stdin", stdin="a good password\n")
    assert added.returncode == 0, added.stderr
    assert "user alice added" in added.stdout
    again = run(tmp_path, "user", "add", "alice", "--password-stdin", stdin="a good password\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = run(tmp_path, "user", "list")
    assert listed.stdout.startswith("alice\t")
    passwd = run(tmp_path, "user", "passwd", "alice", "--password-stdin", stdin="another password\n")
    assert passwd.returncode == 0
    with sqlite3.connect(tmp_path / "data" / "appliance.db") as db:
        [(stored,)] = db.execute("SELECT password_hash FROM users").fetchall()
    assert stored.startswith("scrypt:") and "another password" not in stored
    assert run(tmp_path, "user", "del", "alice").returncode == 0
    missing = run(tmp_path, "user", "del", "alice")
    assert missing.returncode == 1 and "no user 'alice'" in missing.stderr


def test_user_add_rejects_a_short_password_and_asks_for_a_terminal(tmp_path: Path) -> None:
    short = run(tmp_path, "user", "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    no_tty = run(tmp_path, "user", "add", "bob")
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr
    assert "Traceback" not in short.stderr + no_tty.stderr


def test_scanner_credentials_are_printed_once_and_only_a_hash_is_stored(tmp_path: Path) -> None:
    added = run(tmp_path, "scanner", "add", "hall", "--area", "workshop")
    assert added.returncode == 0, added.stderr
    password = added.stdout.strip()
    assert len(password) >= 40 and "shown only this once" in added.stderr
    assert "mqtts://hall@" in added.stderr and password not in added.stderr
    assert run(tmp_path, "scanner", "add", "hall").returncode == 1
    bad = run(tmp_path, "scanner", "add", "Hall Way")
    assert bad.returncode == 1 and "lower-case letters" in bad.stderr
    listed = run(tmp_path, "scanner", "list")
    assert listed.stdout.startswith("hall\tarea workshop\t") and password not in listed.stdout
    assert password.encode() not in (tmp_path / "data" / "appliance.db").read_bytes()
    assert run(tmp_path, "scanner", "revoke", "hall").stdout == "scanner hall revoked\n"
    gone = run(tmp_path, "scanner", "revoke", "hall")
    assert gone.returncode == 1 and "appliance scanner list" in gone.stderr


def test_token_is_printed_once_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    added = run(tmp_path, "token", "add", "camera")
    assert added.returncode == 0
    token = added.stdout.strip()
    assert token.startswith("apt_") and "shown only this once" in added.stderr
    listed = run(tmp_path, "token", "list")
    assert listed.stdout.startswith("camera\t") and token not in listed.stdout
    data = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("appliance.db*"))
    assert token.encode() not in data
    assert run(tmp_path, "token", "revoke", "camera").returncode == 0
    assert run(tmp_path, "token", "revoke", "camera").returncode == 1


def test_db_check_reports_version_and_integrity(tmp_path: Path) -> None:
    missing = run(tmp_path, "db", "check")
    assert missing.returncode == 1 and "no database" in missing.stderr
    run(tmp_path, "user", "list")  # creates the database
    checked = run(tmp_path, "db", "check")
    assert checked.returncode == 0
    assert f"schema version {LATEST}" in checked.stdout and "integrity ok" in checked.stdout


def test_db_check_finds_a_corrupted_file(tmp_path: Path) -> None:
    run(tmp_path, "user", "add", "alice", "--password-stdin", stdin="a good password\n")
    path = tmp_path / "data" / "appliance.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    raw = bytearray(path.read_bytes())
    raw[page_size + 8: page_size + 64] = b"\xff" * 56  # scribble over the second page
    path.write_bytes(bytes(raw))
    checked = run(tmp_path, "db", "check")
    assert checked.returncode != 0
    assert "Traceback" not in checked.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"APPLIANCE_RADIO": "bluez"}, "bad setting radio='bluez' (from APPLIANCE_RADIO): "
                                    "expected one of bleak, virtual"),
     ({"APPLIANCE_PORT": "http"}, "bad setting port='http'")],
)
def test_bad_setting_stops_with_one_line(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    result = run(tmp_path, "serve", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and expected in result.stderr


async def test_serve_answers_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # No settings but the data directory: production defaults, the real adapter (none here).
    sock = tmp_path / "app.sock"
    (tmp_path / "none.toml").touch()
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
           "APPLIANCE_CONFIG": str(tmp_path / "none.toml")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "serve", "--unix-socket", str(sock), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(sock))) as client:

            async def healthy() -> bool:
                try:
                    return (await client.get("http://localhost/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(healthy, within=30, what="appliance serve to answer")
        # aiohttp (installed for `appliance publish`) is never loaded by the server: its
        # compiled parts would be mapped.
        assert "aiohttp" not in await asyncio.to_thread(Path(f"/proc/{proc.pid}/maps").read_text)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        output = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
        assert "no users yet" in output.lower() and "Traceback" not in output
        assert os.stat(tmp_path / "data").st_mode & 0o777 == 0o700
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
