"""What the appliance can say about its own setup: the Cloudflare tunnel, the first-boot file, Bluetooth.

Cheap file checks, done when /status or the dashboard asks; nothing is cached.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from appliance.settings import Settings
from appliance.store.db import Database


def tunnel(settings: Settings) -> dict[str, Any]:
    installed = os.access(settings.cloudflared_bin, os.X_OK)
    token = Path(settings.tunnel_token_file)
    # The token file is root-only: the app checks it exists, never reads it.
    configured = token.exists() and token.stat().st_size > 0
    if not installed:
        message = ("cloudflared is not installed yet: once a tunnel token is set, the appliance "
                   "installs it from Cloudflare's repository by itself (it needs the internet; "
                   "`supervisorctl tail cloudflared` says how far it got); the appliance works on "
                   "your network meanwhile")
    elif not configured:
        message = ("no Cloudflare tunnel token: put cloudflare_tunnel_token in appliance.toml on "
                   "the boot partition and reboot")
    else:
        message = "the tunnel runs under supervisor (`supervisorctl status cloudflared`)"
    return {"installed": installed, "configured": configured, "message": message}


def storage(settings: Settings, db: Database) -> dict[str, Any]:
    """The data partition: full (the reserve given back, see store/space.py) or not."""
    full = db.full()
    try:
        free = shutil.disk_usage(settings.data_dir).free
    except OSError:
        free = 0
    message = (f"the SD card is full ({free // (1024 * 1024)} MiB free): new readings, frames "
               "and last-seen times are not stored; logins, pairing and deleting still work. "
               "Delete old timelapse videos or other files on the card; the appliance goes on "
               "by itself" if full else "ok")
    return {"full": full, "freeBytes": free, "refusedWrites": db.refused, "message": message}


def setup(settings: Settings) -> dict[str, Any]:
    """The last first-boot run: when, what it applied, what it could not."""
    try:
        status = json.loads(Path(settings.firstboot_status_file).read_text())
    except (OSError, ValueError):
        return {"at": None, "applied": [], "errors": []}
    return {"at": status.get("at"), "applied": list(status.get("applied", [])),
            "errors": list(status.get("errors", []))}


def notices(settings: Settings, bluetooth_error: str | None = None,
            db: Database | None = None) -> list[str]:
    """Sentences for the dashboard: setup problems a user should act on.

    ``bluetooth_error``: the radio's last error while it is not scanning (no adapter, say).
    """
    found = [f"First-boot file: {error['key']}: {error['message']}"
             for error in setup(settings)["errors"]]
    if db is not None and (space := storage(settings, db))["full"]:
        found.append(str(space["message"][0].upper() + space["message"][1:]) + ".")
    if bluetooth_error:
        found.append(f"Bluetooth is not scanning, so beacons are not tracked: {bluetooth_error}. "
                     "The appliance keeps retrying; /status shows the adapter's state.")
    state = tunnel(settings)
    if not (state["installed"] and state["configured"]):
        found.append(str(state["message"]))
    return found
