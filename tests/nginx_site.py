"""The project's nginx site (ansible/roles/nginx) rendered for a loopback port and Debian's nginx
run in the foreground: the tests and the benchmarks (tests/bench) start it this one way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jinja2
import yaml
from helpers import wait_for

NGINX_ROLE = Path(__file__).resolve().parent.parent / "ansible" / "roles" / "nginx"


def nginx_binary() -> str:
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if path is None:
        msg = "nginx is missing: apt-get install nginx (system-packages/test.txt)"
        raise SystemExit(msg)
    return path


def render_nginx(out: Path, port: int, app_socket: Path, **values: Any) -> Path:
    """The site for ``port`` and the app's socket (role defaults, then ``values``), in a main
    nginx.conf with one worker and its state in ``out``."""
    defaults = yaml.safe_load((NGINX_ROLE / "defaults" / "main.yml").read_text())
    values = {**defaults, "nginx_listen_port": port, "nginx_app_socket": str(app_socket),
              "ansible_managed": "rendered by tests/nginx_site.py", **values}
    template = jinja2.Template((NGINX_ROLE / "templates" / "appliance-site.conf.j2").read_text(),
                               undefined=jinja2.StrictUndefined)
    out.mkdir(parents=True, exist_ok=True)
    (out / "site.conf").write_text(template.render(values))
    conf = out / "nginx.conf"
    # One worker, pinned with the app: what one core of the Pi gives both.
    # As root, nginx's worker would be "nobody" and could not reach the app's private socket.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
worker_processes 1;
pid {out}/nginx.pid;
error_log {out}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {out}/body;
    proxy_temp_path {out}/proxy;
    include {out}/site.conf;
}}
""")
    return conf


@contextlib.asynccontextmanager
async def nginx_running(out: Path, port: int, app_socket: Path, **values: Any,
                        ) -> AsyncIterator[str]:
    """nginx in front of the app's socket until the block ends; yields its base URL."""
    conf = render_nginx(out, port, app_socket, **values)
    process = await asyncio.create_subprocess_exec(nginx_binary(), "-c", str(conf),
                                                   "-g", "daemon off;")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as probe:

            async def up() -> bool:
                if process.returncode is not None:
                    log = (out / "nginx-error.log").read_text()
                    msg = f"nginx exited with {process.returncode}: {log[-2000:]}"
                    raise RuntimeError(msg)
                with contextlib.suppress(httpx.TransportError):
                    return (await probe.get(f"{base}/health")).status_code == 200
                return False

            await wait_for(up, within=20, what="nginx in front of the app")
        yield base
    finally:
        process.terminate()
        await process.wait()
