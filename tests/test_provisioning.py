"""The Ansible playbook and what it renders: lint, syntax, nginx -t, and the real supervisord
running the app, real nginx and the cloudflared stand-in on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio
from helpers import PASSWORD, wait_for
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
STANDIN = ROOT / "tests" / "standins" / "cloudflared"


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is missing: sudo apt-get install nginx supervisor")
    return path


def _run(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None, stdin: str = ""
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          input=stdin, env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})})


def test_ansible_lint_production_profile_is_clean() -> None:
    result = _run(str(BIN / "ansible-lint"), "--profile", "production", "--nocolor",
                  cwd=ROOT / "ansible")
    assert result.returncode == 0, result.stdout + result.stderr


def test_playbook_syntax() -> None:
    result = _run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                  "ansible/site.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The templates rendered for a stack under one temporary directory."""
    out = tmp_path_factory.mktemp("stack")
    port = _free_port()
    overrides = {
        "out": str(out),
        "appliance_venv": str(BIN.parent), "appliance_user": "root",
        "appliance_config_dir": str(out), "appliance_data_dir": str(out / "data"),
        "appliance_socket": str(out / "run" / "app.sock"), "appliance_radio": "virtual",
        "appliance_settings": {"login_max_failures": 2, "virtual_beacons": 1,
                               "firstboot_status_file": str(out / "firstboot.json"),
                               "cloudflared_bin": str(STANDIN)},
        # One path for the token, as in group_vars: the app's /status and cloudflared's program.
        "appliance_tunnel_token_file": str(out / "token"),
        "nginx_listen_port": port,
        "supervisor_log_to_syslog": False, "supervisor_log_dir": str(out / "log"),
        "nginx_supervisor_command": f'{_tool("nginx")} -c {out}/nginx.conf -g "daemon off;"',
        "cloudflared_runner": str(ROOT / "ansible/roles/cloudflared/files/cloudflared-run"),
        "cloudflared_bin": str(STANDIN),
        # The embedded broker (rendered beside the stack, not in supervisor/: its own test runs it).
        "appliance_mqtt_embedded": True, "appliance_mqtt_port": _free_port(),
        "appliance_mqtt_tls_port": _free_port(), "appliance_mqtt_cert": str(out / "mqtt-cert.pem"),
        "appliance_mqtt_key": str(out / "mqtt-key.pem"), "appliance_mqtt_dir": str(out / "mqtt"),
    }
    (out / "overrides.json").write_text(json.dumps(overrides))
    result = _run(str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                  "tests/provisioning/render.yml", "-e", f"@{out}/overrides.json",
                  "-e", f"ansible_python_interpreter={sys.executable}")
    assert result.returncode == 0, result.stdout + result.stderr
    (out / "log").mkdir()
    # The socket directory as tmpfiles.d makes it: setgid, group www-data, so nginx's workers
    # (www-data) may connect to the app's socket and nobody else may. As root (CI) this is the
    # real permission model; otherwise every process simply runs as the same user.
    run_dir = out / "run"
    run_dir.mkdir()
    worker = ""
    if os.geteuid() == 0:
        import grp

        os.chown(run_dir, 0, grp.getgrnam("www-data").gr_gid)
        run_dir.chmod(0o2750)
        for parent in (out, *out.parents):  # let www-data traverse to the socket
            if parent == Path(tempfile.gettempdir()):
                break
            parent.chmod(parent.stat().st_mode | 0o001)
        worker = "user www-data;"
    # A main nginx.conf around the rendered site, with its state in the temporary directory.
    (out / "nginx.conf").write_text(f"""
{worker}
pid {out}/nginx.pid;
error_log {out}/log/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {out}/nginx-body;
    proxy_temp_path {out}/nginx-proxy;
    include {out}/nginx-site.conf;
}}
""")
    return out, port


def test_rendered_files_carry_the_settings(rendered: tuple[Path, int]) -> None:
    out, port = rendered
    site = (out / "nginx-site.conf").read_text()
    assert f"listen {port} default_server" in site
    assert "map $http_upgrade $connection_upgrade" in site
    assert "real_ip_header CF-Connecting-IP" in site and "set_real_ip_from 127.0.0.1" in site
    assert "client_max_body_size 3m" in site and "proxy_read_timeout 75s" in site
    settings = (out / "appliance.toml").read_text()
    assert 'trusted_proxies = ["unix"]' in settings and "login_max_failures = 2" in settings
    # One socket path (group_vars): the app listens on it, nginx proxies to it.
    socket_path = out / "run" / "app.sock"
    assert f'unix_socket = "{socket_path}"' in settings and f"unix:{socket_path}:;" in site
    cloudflared = (out / "supervisor" / "cloudflared.conf").read_text()
    assert "autorestart=unexpected" in cloudflared and "exitcodes=0" in cloudflared
    # The token's path is written once (group_vars) and reaches both of its readers.
    token = str(out / "token")
    command = next(line for line in cloudflared.splitlines() if line.startswith("command="))
    assert f'tunnel_token_file = "{token}"' in settings and command.endswith(f" {token}")
    assert "btattach -B /dev/ttyS1 -P h4" in (out / "appliance-btattach.service").read_text()
    assert "Storage=volatile" in (out / "journald.conf").read_text()
    assert "d " + str(out / "run") + " 2750 root www-data" in (out / "tmpfiles.conf").read_text()


async def test_the_rendered_broker_listens_on_loopback_and_tls_only_outside(
        rendered: tuple[Path, int]) -> None:
    import ssl

    import aiomqtt

    out, _port = rendered
    settings = (out / "appliance.toml").read_text()
    conf = (out / "mosquitto.conf").read_text()
    loopback = int(conf.split("listener ")[1].split()[0])
    tls = int(conf.split("listener ")[2].split()[0])
    assert f"mqtt_embedded = true\nmqtt_embedded_port = {loopback}" in settings
    assert f"listener {loopback} 127.0.0.1\n" in conf and f"listener {tls}\ncertfile" in conf
    assert "allow_anonymous false" in conf and f"acl_file {out}/mqtt/acl" in conf
    program = (out / "supervisor-mosquitto.conf").read_text()
    assert "user=root" in program and f"-c {out}/mosquitto.conf" in program
    # The certificate as the appliance makes it (the rendered script), named after this host.
    for made in (out / "mqtt-cert.pem", out / "mqtt-key.pem"):
        made.unlink(missing_ok=True)
    (out / "mqtt").mkdir(exist_ok=True)
    script = out / "appliance-mqtt-cert"
    script.chmod(0o755)
    first = _run(str(script))
    assert first.returncode == 0 and "made" in first.stdout, first.stdout + first.stderr
    cert = (out / "mqtt-cert.pem").read_bytes()
    assert stat.S_IMODE((out / "mqtt-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "mqtt-cert.pem").stat().st_mode) == 0o644
    again = _run(str(script))
    assert again.returncode == 0 and (out / "mqtt-cert.pem").read_bytes() == cert  # made once
    unit = (out / "appliance-mqtt-cert.service").read_text()
    assert f"ConditionPathExists=!{out}/mqtt-cert.pem" in unit and "After=appliance-firstboot" in unit
    for name in ("passwd", "acl"):
        (out / "mqtt" / name).write_text("")
    process = await asyncio.create_subprocess_exec(
        _tool("mosquitto"), "-c", str(out / "mosquitto.conf"), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async def refused(port: int, **tls: object) -> bool:
            try:
                async with aiomqtt.Client("127.0.0.1", port, username="x", password="y",
                                          timeout=2, **tls):  # type: ignore[arg-type]
                    return False
            except aiomqtt.MqttCodeError:
                return True  # it answered: not authorised
            except aiomqtt.MqttError:
                return False

        assert await wait_for(lambda: refused(loopback), what="the loopback listener")
        # What a scanner does: trust mqtt-cert.pem (mqtt_ca_file) and check the name it dials.
        context = ssl.create_default_context(cafile=str(out / "mqtt-cert.pem"))
        name = f"{socket.gethostname().split('.')[0]}.local"
        _reader, writer = await asyncio.open_connection("127.0.0.1", tls, ssl=context,
                                                       server_hostname=name)
        writer.close()
        context.check_hostname = False  # aiomqtt names the host it dials: 127.0.0.1 here
        assert await wait_for(lambda: refused(tls, tls_context=context), what="the TLS listener")
        assert not await refused(tls)  # plain MQTT on the outside listener gets nowhere
    finally:
        process.terminate()
        await process.wait()


def test_nginx_accepts_the_rendered_site(rendered: tuple[Path, int]) -> None:
    out, _port = rendered
    result = _run(_tool("nginx"), "-t", "-c", str(out / "nginx.conf"))
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@pytest.fixture(scope="module")
def stack(rendered: tuple[Path, int]) -> Iterator[tuple[Path, str]]:
    out, port = rendered
    conf = out / "supervisord.conf"
    conf.write_text(f"""
[supervisord]
nodaemon=true
logfile={out}/log/supervisord.log
pidfile={out}/supervisord.pid
[unix_http_server]
file={out}/supervisor.sock
[supervisorctl]
serverurl=unix://{out}/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[include]
files = {out}/supervisor/*.conf
""")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen([_tool("supervisord"), "-c", str(conf)], env=env)
    try:
        yield out, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def supervisorctl(out: Path, *args: str) -> str:
    return _run(_tool("supervisorctl"), "-c", str(out / "supervisord.conf"), *args).stdout


async def _states(out: Path) -> dict[str, str]:
    return {line.split()[0]: line.split()[1]
            for line in supervisorctl(out, "status").splitlines() if line.strip()}


async def test_supervisor_runs_the_app_and_nginx_and_explains_the_missing_tunnel(
    stack: tuple[Path, str]
) -> None:
    out, base = stack

    async def running() -> bool:
        states = await _states(out)
        return states.get("appliance") == "RUNNING" and states.get("nginx") == "RUNNING"

    await wait_for(running, within=60, what="appliance and nginx RUNNING under supervisor")
    states = await _states(out)
    assert states["cloudflared"] == "EXITED"
    # The app keeps CAP_NET_ADMIN (adapter recovery) and nothing else, as an ambient capability.
    assert _ambient_caps(supervisorctl(out, "pid", "appliance").strip()) == 1 << 12
    assert "no tunnel token" in (out / "log" / "cloudflared.log").read_text()
    async with httpx.AsyncClient() as client:

        async def healthy() -> bool:
            try:
                return (await client.get(f"{base}/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, within=60, what="/health through nginx")
        status = (await client.get(f"{base}/devices")).json()
        assert status["error"] == "unauthorized"  # the app's own answer, through nginx
        assert "Strict-Transport-Security" not in (await client.get(f"{base}/health")).headers


async def test_tunnel_starts_once_a_private_token_exists(stack: tuple[Path, str]) -> None:
    out, _base = stack
    token = out / "token"
    token.write_text("eyJhIjoiYiJ9.standin-token\n")
    token.chmod(0o600)
    supervisorctl(out, "start", "cloudflared")

    async def tunnel_up() -> bool:
        return (await _states(out)).get("cloudflared") == "RUNNING"

    await wait_for(tunnel_up, within=30, what="cloudflared RUNNING")
    assert "cloudflared stand-in: tunnel running (http2)" in (out / "log" / "cloudflared.log").read_text()
    supervisorctl(out, "stop", "cloudflared")


async def _login(client: httpx.AsyncClient, base: str, **headers: str) -> httpx.Response:
    return await client.post(f"{base}/api/session", headers=headers,
                             json={"username": "alice", "password": PASSWORD})


async def test_through_nginx_cookies_client_ips_and_websockets(stack: tuple[Path, str]) -> None:
    out, base = stack
    result = _run(str(BIN / "appliance"), "user", "add", "alice", "--password-stdin",
                  env={"APPLIANCE_CONFIG": str(out / "appliance.toml")}, stdin=PASSWORD + "\n")
    assert result.returncode == 0 or "already exists" in result.stderr
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_for(lambda: _up(client, base), within=60, what="the app through nginx")
        plain = await _login(client, base)
        assert plain.status_code == 200 and "Secure" not in plain.headers["set-cookie"]
        # We are 127.0.0.1, where cloudflared would be: its X-Forwarded-Proto is believed.
        tunnel = await _login(client, base, **{"X-Forwarded-Proto": "https"})
        assert "Secure" in tunnel.headers["set-cookie"]
        assert tunnel.headers["strict-transport-security"].startswith("max-age=")

        # CF-Connecting-IP is the client address the app throttles by.
        for name in ("nobody1", "nobody2"):
            response = await client.post(f"{base}/api/session", json={
                "username": name, "password": "wrong password"},
                headers={"CF-Connecting-IP": "203.0.113.5"})
            assert response.status_code == 401
        blocked = await client.post(f"{base}/api/session", json={
            "username": "nobody3", "password": "wrong password"},
            headers={"CF-Connecting-IP": "203.0.113.5"})
        assert blocked.status_code == 429
        other = await client.post(f"{base}/api/session", json={
            "username": "nobody4", "password": "wrong password"},
            headers={"CF-Connecting-IP": "203.0.113.6"})
        assert other.status_code == 401

        too_big = await client.post(f"{base}/api/image", content=b"\xff" * (4 * 1024 * 1024))
        assert too_big.status_code == 413 and too_big.json()["error"] == "too_large"

        cookie = f"appliance_session={plain.cookies['appliance_session']}"
    # Browsers offer permessage-deflate; through nginx it is never agreed (frames do not compress).
    url = base.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with ws_connect(url, additional_headers={"Cookie": cookie, "Origin": base},
                          compression="deflate") as raw:
        assert raw.response is not None
        assert "Sec-WebSocket-Extensions" not in raw.response.headers
        assert (await raw.recv()).startswith("0")
    sio = socketio.AsyncClient(reconnection=False)
    got: list[object] = []
    sio.on("devices2v", got.append)
    await sio.connect(base, headers={"Cookie": cookie, "Origin": base}, transports=["websocket"],
                      wait_timeout=10)
    await wait_for(lambda: got, what="devices2v over a WebSocket through nginx")
    assert sio.transport() == "websocket"
    await sio.disconnect()


def _ambient_caps(pid: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapAmb:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no CapAmb for pid {pid}")


async def _up(client: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await client.get(f"{base}/health")).status_code == 200
    except httpx.TransportError:
        return False
