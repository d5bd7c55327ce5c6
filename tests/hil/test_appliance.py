"""The appliance end to end on a rig: the image booted, BlueZ and bleak on a radio, beacons running
the firmware, nginx and supervisor in front. The scenarios run in file order on one booted rig.

Scenario numbers are those of tests/hil/README.md. What they measure lands in the JUnit report
(build/hil-report.xml, testsuite properties) and build/hil-measurements.json.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import socketio
from helpers import make_png

from .conftest import ROOT, TEST_SETTINGS, restart_app, wait_ready
from .rig import RIG_POLL_S, Rig, until

APP_CONFIG: Final = "/etc/appliance/appliance.toml"
DB_CHECK: Final = f"sudo -u appliance /opt/appliance/bin/appliance --config {APP_CONFIG} db check"
# Scenario 3's repetitions per beacon (each waits out forget_after_s, 30 s). CI runs 3 (6
# samples); issue 14's p50/p95 over >= 30 samples is `make hil-test HIL_DISCOVERY_ROUNDS=15`.
DISCOVERY_ROUNDS: Final = int(os.environ.get("HIL_DISCOVERY_ROUNDS", "3"))
# Scenario 6: power cuts in a row. Each is a boot under TCG (1.5-4 min), so CI runs 3; the long
# run is `make hil-test HIL_POWER_CUTS=20`.
POWER_CUTS: Final = int(os.environ.get("HIL_POWER_CUTS", "3"))
USER: Final = "hil-user"
FIRST_BOOT_FILE: Final = "/boot/firmware/appliance.toml"
BAD_TIMEZONE: Final = "Mars/Olympus_Mons"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def device(client: Any, address: str) -> dict[str, Any] | None:
    response = await client.get("/devices")
    response.raise_for_status()
    return next((d for d in response.json()["discovered"] if d["id"] == address), None)


async def wait_state(client: Any, address: str, state: str, within: float,
                     linked: bool | None = None) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = await device(client, address)
        if found and found["state"] == state and (linked is None or found["isConnected"] == linked):
            return found
        return None
    return await until(probe, within, f"{address} {state}{' linked' if linked else ''} in GET /devices")


async def beacon_addresses(client: Any, count: int) -> list[str]:
    async def probe() -> list[str] | None:
        found = (await client.get("/devices")).json()["discovered"]
        return [d["id"] for d in found][:count] if len(found) >= count else None
    return sorted(await until(probe, 120, f"{count} beacons in GET /devices"))


# --- 0: provisioning is idempotent -------------------------------------------------------------------

def test_0_the_playbook_over_ssh_changes_nothing_on_a_provisioned_appliance(rig: Rig, tmp_path: Path) -> None:
    """ansible/site.yml against the running appliance over SSH, as a user provisions a Pi, with the
    inputs the image was built with (its wheel and pinned versions, kept in /opt/appliance/dist):
    the image build's run was the first, this second one must report changed=0."""
    service = rig.ssh.networkservice
    inputs = {}
    for name in rig.sh("ls /opt/appliance/dist").split():
        local = tmp_path / name
        local.write_bytes(base64.b64decode(rig.sh(f"base64 -w0 /opt/appliance/dist/{name}")))
        inputs["wheel" if name.endswith(".whl") else name] = local
    assert {"wheel", "constraints.txt"} <= inputs.keys(), inputs
    key = next((a for a in rig.ssh.ssh_prefix if a.endswith("id_ed25519")), None)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[appliance]\n"
        f"rig ansible_host={service.address} ansible_port={service.port} ansible_user={rig.admin_user}"
        + (f" ansible_ssh_private_key_file={key}" if key else "")
        + " ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n")
    target = "twin" if "virtual" in rig.features else "pi"
    command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
               str(ROOT / "ansible" / "site.yml"), "-e", f"appliance_target={target}",
               "-e", f"appliance_wheel={inputs['wheel']}",
               "-e", f"appliance_constraints={inputs['constraints.txt']}"]
    if "virtual" in rig.features:  # the guest's network reaches only its forwarded loopback ports
        command += ["-e", "base_apt_update_cache=false"]
    environment = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"),
                   "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
    since = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=2400,
                            check=False)
    recap = re.search(r"rig\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                      result.stdout)
    assert result.returncode == 0 and recap, result.stdout[-4000:] + result.stderr[-2000:]
    # Each changed task: its TASK header and the changed line.
    changed, task = [], ""
    for line in result.stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].split("]", 1)[0]
        elif line.startswith("changed:"):
            changed.append(f"{task}: {line}")
    rig.measurements["playbook_over_ssh"] = {"seconds": round(time.monotonic() - since),
                                             "ok": int(recap[1]), "changed": int(recap[2])}
    wait_ready(rig)  # a handler may have restarted the app
    assert int(recap[2]) == 0, "\n".join(changed)


# --- 1: boot to ready -------------------------------------------------------------------------------

def test_1_boot_to_ready(rig: Rig) -> None:
    assert rig.unit_failed() == [], rig.sh("systemctl --failed --no-pager", check=False)
    programs = rig.supervisor_status()
    assert programs["appliance"] == "RUNNING", programs
    assert programs["nginx"] == "RUNNING", programs
    # No tunnel token on a fresh card: cloudflared is not running, and the reason is on record.
    assert programs.get("cloudflared") in ("EXITED", "STOPPED", "FATAL"), programs
    # The runner's own words (cloudflared-run): no token comes first, then a missing binary.
    reason = rig.sh("journalctl -b -u supervisor --no-pager "
                    "--grep 'no tunnel token|cloudflared is not installed'", sudo=True)
    assert "token" in reason or "not installed" in reason, reason
    assert rig.sh("systemctl is-active bluetooth supervisor").split() == ["active", "active"]


async def test_1_status_says_how_to_add_a_tunnel(rig: Rig) -> None:
    async with rig.web() as client:
        status = (await client.get("/status")).json()
    assert status["bluetooth"]["scanning"] is True, status["bluetooth"]
    assert status["tunnel"]["configured"] is False
    assert "cloudflare" in status["tunnel"]["message"].lower()


# --- 2: login and Socket.IO through nginx -----------------------------------------------------------

async def test_2_login_and_socketio_over_websocket_through_nginx(rig: Rig) -> None:
    async with rig.web() as client:
        assert (await client.get("/api/session")).json()["username"] == rig.admin_user
        async with rig.browser(client) as browser:
            assert browser.sio.transport() == "websocket"
            at, devices = await browser.wait_event("devices2v", lambda _: True, within=30)
            assert at > 0 and isinstance(devices, (dict, list))
    # Anonymous requests are refused through nginx too.
    async with httpx.AsyncClient(base_url=rig.http_url, timeout=10) as anonymous:
        assert (await anonymous.get("/devices")).status_code == 401


# --- 3: discovery -----------------------------------------------------------------------------------

async def test_3_discovery_latency(tuned: Rig) -> None:
    rig = tuned
    latencies: list[float] = []
    async with rig.web() as client, rig.browser(client) as browser:
        addresses = await beacon_addresses(client, len(rig.beacons))
        for _round in range(DISCOVERY_ROUNDS):
            # Removals from this round only: "the last second" also caught the previous round's,
            # when its rediscovery was quick, and then a beacon turned back on before it had been
            # forgotten was never "discovered" (the flaky failure of this scenario).
            off_at = time.monotonic()
            for beacon in rig.beacons:
                beacon.command("adv off")
            for address in addresses:  # unpaired beacons are forgotten once silent for forget_after_s
                await browser.wait_event(
                    "presence2v", lambda d, a=address: d.get("id") == a and d.get("removed"),
                    within=120, since=off_at)
            for beacon in rig.beacons:
                since = time.monotonic()
                beacon.command("adv on")
                at, data = await browser.wait_event(
                    "presence2v", lambda d: d.get("state") == "discovered", within=60, since=since)
                latencies.append(at - since)
                await browser.wait_event("presence2v", lambda d, a=data["id"]: d.get("id") == a,
                                         within=5, since=since)
    rig.measurements["discovery_latency_s"] = {
        "samples": [round(s, 2) for s in latencies], "p50": round(statistics.median(latencies), 2),
        "p95": round(percentile(latencies, 0.95), 2)}
    assert len(latencies) == DISCOVERY_ROUNDS * len(rig.beacons)


# --- 4: pairing lifecycle ---------------------------------------------------------------------------

async def beacon_of(rig: Rig, client: Any, index: int) -> str:
    """The address of rig.beacons[index]: the device that disappears when it alone stops advertising."""
    addresses = await beacon_addresses(client, len(rig.beacons))
    if len(addresses) == 1:
        return addresses[0]
    rig.beacons[index].command("adv off")
    try:
        async def gone() -> str | None:
            present = {d["id"] for d in (await client.get("/devices")).json()["discovered"]}
            missing = [a for a in addresses if a not in present]
            return missing[0] if missing else None
        return await until(gone, 120, f"beacon {index} forgotten after adv off")
    finally:
        rig.beacons[index].command("adv on")


async def test_4_pairing_lifecycle(tuned: Rig) -> None:
    rig = tuned
    beacon = rig.beacons[0]
    async with rig.web() as client:
        address = await beacon_of(rig, client, 0)
        await wait_state(client, address, "discovered", 60)
        paired = await client.post("/pair", json={"deviceId": address, "userId": USER, "userName": "HIL"})
        assert paired.status_code == 200, paired.text
        await wait_state(client, address, "connected", 90, linked=True)

        # Leaves and comes back within the window: reconnected without a tap. Issue 14: a beacon
        # leaving is noticed within away_after_s + 2 s (recorded, with the rig's poll interval).
        off_at = time.monotonic()
        beacon.command("adv off")
        await wait_state(client, address, "away", 60)
        rig.measurements["away_noticed_s"] = {
            "seconds": round(time.monotonic() - off_at, 1),
            "goal_s": TEST_SETTINGS["away_after_s"] + 2, "poll_s": RIG_POLL_S}
        beacon.command("adv on")
        since = time.monotonic()
        await wait_state(client, address, "connected", 90, linked=True)
        rig.measurements["reconnect_within_window_s"] = round(time.monotonic() - since, 1)

        # Leaves for longer than the window: back, it waits for the Reconnect tap.
        beacon.command("adv off")
        await wait_state(client, address, "away", 60)
        await wait_state(client, address, "requiresTap", 90)
        beacon.command("adv on")
        seen_before = (await device(client, address) or {}).get("lastSeen")

        async def seen_again() -> dict[str, Any] | None:
            found = await device(client, address)
            return found if found and found["lastSeen"] != seen_before else None
        back = await until(seen_again, 60, "the beacon seen again after the window")
        assert back["state"] == "requiresTap" and back["isConnected"] is False, back

        tapped = await client.post("/reconnect", json={"deviceId": address})
        assert tapped.status_code == 200, tapped.text
        await wait_state(client, address, "connected", 90, linked=True)


# --- 5: the relay through nginx ---------------------------------------------------------------------

async def test_5_publisher_frames_readings_and_status_reach_a_browser(rig: Rig) -> None:
    async with rig.web() as client:
        made = await client.post("/api/tokens", json={"name": f"hil-camera-{int(time.time())}"})
        assert made.status_code == 201, made.text
        publisher = socketio.AsyncClient(reconnection=False)
        await publisher.connect(rig.http_url, auth={"token": made.json()["token"]}, transports=["websocket"],
                                wait_timeout=30)
        try:
            async with rig.browser(client) as browser:
                latencies = []
                for n in range(20):
                    png = make_png(rgb=(n, 100, 200))
                    since = time.monotonic()
                    assert await publisher.call("image", png, timeout=30) == {"ok": True}
                    at, frame = await browser.wait_event("image2v", lambda f, p=png: f["image"] == p,
                                                         within=30, since=since)
                    latencies.append(at - since)
                    assert frame["mime"] == "image/png"
                reading = {"temperature": 21.5, "humidity": 40}
                assert await publisher.call("temphum", reading, timeout=30) == {"ok": True}
                assert await publisher.call("status", {"status": "printing 42%"}, timeout=30) == {"ok": True}
                _, got = await browser.wait_event("temphum2v", lambda r: r["temperature"] == 21.5, within=30)
                await browser.wait_event("status2v", lambda s: s["status"] == "printing 42%", within=30)
        finally:
            await publisher.disconnect()
        history = await client.get("/api/temphum", params={"date": got["timestamp"][:10]})
        assert 21.5 in [r["temperature"] for r in history.json()]
    rig.measurements["frame_latency_s"] = {"p50": round(statistics.median(latencies), 3),
                                           "p95": round(percentile(latencies, 0.95), 3)}


# --- 6: reboot and power cuts -----------------------------------------------------------------------

def boot_id(rig: Rig) -> str:
    return rig.sh("cat /proc/sys/kernel/random/boot_id").strip()


def reconnect_after_boot(rig: Rig, old_boot: str) -> float:
    """SSH back in once the appliance has booted again and is ready; seconds it took."""
    return float(rig.strategy.rebooted(old_boot))


async def snapshot(rig: Rig) -> dict[str, Any]:
    async with rig.web() as client:
        users = sorted(u["username"] for u in (await client.get("/api/users")).json()["users"])
        devices = (await client.get("/devices")).json()["discovered"]
    return {"users": users, "paired": sorted(d["id"] for d in devices if d["isPaired"])}


async def test_6_reboot_keeps_users_pairings_and_history_and_reports_a_bad_first_boot_value(
    rig: Rig,
) -> None:
    """A reboot, with a user's edit of the first-boot file on the boot partition that has one bad
    value: the data survives, the error is in the journal and on /status, and the appliance boots."""
    await asyncio.to_thread(wait_ready, rig)
    async with rig.web() as client:
        made = await client.post("/api/users",
                                 json={"username": "hil-survivor", "password": "a long password 1"})
        assert made.status_code in (201, 409), made.text
    before = await snapshot(rig)
    assert "hil-survivor" in before["users"]
    rig.sh(f"printf '%s\\n' 'timezone = \"{BAD_TIMEZONE}\"' >> {FIRST_BOOT_FILE}", sudo=True)
    old = boot_id(rig)
    rig.sh("systemctl reboot", sudo=True, check=False)
    rig.measurements["reboot_to_ready_s"] = round(reconnect_after_boot(rig, old), 1)
    after = await snapshot(rig)
    assert after == before
    assert "integrity ok" in rig.sh(DB_CHECK, sudo=True)

    journal = rig.sh("journalctl -b -u appliance-firstboot --no-pager", sudo=True)
    assert "timezone" in journal and BAD_TIMEZONE in journal, journal
    assert rig.sh("systemctl is-failed appliance-firstboot", check=False).strip() != "failed"
    async with rig.web() as client:
        setup = (await client.get("/status")).json()["setup"]
    assert [error["key"] for error in setup["errors"]] == ["timezone"], setup
    assert "# ERROR:" in rig.sh(f"cat {FIRST_BOOT_FILE}", sudo=True)
    rig.sh(f"sed -i -e '/^# ERROR: timezone:/d' -e '\\|{BAD_TIMEZONE}|d' {FIRST_BOOT_FILE}", sudo=True)


class Writer:
    """A publisher sending readings and frames as fast as they are acknowledged (SQLite writes).

    Each reading's temperature is unique in the run, so the ones acknowledged before a power cut
    can be looked for afterwards."""

    def __init__(self, url: str, token: str, seed: int) -> None:
        self.url, self.token, self.seed = url, token, seed
        self.acked: list[float] = []
        self.sio = socketio.AsyncClient(reconnection=False)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sio.connect(self.url, auth={"token": self.token}, transports=["websocket"],
                               wait_timeout=30)
        self.task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            temperature = round(20 + self.seed + len(self.acked) % 1000 / 1000, 3)
            ack = await self.sio.call("temphum", {"temperature": temperature, "humidity": 50},
                                      timeout=30)
            if ack == {"ok": True}:
                self.acked.append(temperature)
            await self.sio.call("image", make_png(rgb=(self.seed, len(self.acked) % 256, 1)),
                                timeout=30)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.sio.disconnect()


class Admin:
    """Someone at the dashboard meanwhile: adds users and renames a beacon's pairing, one after
    the other, remembering what the appliance acknowledged (and what was in flight at the cut)."""

    def __init__(self, client: httpx.AsyncClient, address: str, cut: int) -> None:
        self.client, self.address, self.cut = client, address, cut
        self.users: list[str] = []
        self.names: list[str] = []
        self.in_flight: str | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._work())

    async def _work(self) -> None:
        for n in range(1000):
            user = f"hil-cut{self.cut}-{n}"
            made = await self.client.post("/api/users", json={"username": user,
                                                               "password": "a long password 1"})
            if made.status_code == 201:
                self.users.append(user)
            self.in_flight = name = f"HIL cut {self.cut}.{n}"
            paired = await self.client.post("/pair", json={"deviceId": self.address,
                                                            "userId": USER, "userName": name})
            if paired.status_code == 200:
                self.names.append(name)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def stored_temperatures(rig: Rig) -> set[float]:
    today = datetime.now(UTC).date()
    async with rig.web() as client:
        found: set[float] = set()
        for day in (today - timedelta(days=1), today):
            answer = await client.get("/api/temphum", params={"date": day.isoformat()})
            answer.raise_for_status()
            found |= {reading["temperature"] for reading in answer.json()}
        return found


async def test_6_power_cuts_during_writes_lose_no_committed_pairing(rig: Rig) -> None:
    """HIL_POWER_CUTS times (3 here; `make hil-test HIL_POWER_CUTS=20` for the long run), the
    plug is pulled at a random moment while a publisher writes readings and frames, a user is
    added and a pairing changes: the database checks out and nothing acknowledged is lost."""
    before = await snapshot(rig)
    assert before["paired"], "scenario 4 pairs a beacon first"
    chance = random.Random(int(os.environ.get("HIL_SEED", time.time())))
    async with rig.web() as client:
        made = await client.post("/api/tokens", json={"name": f"hil-writer-{int(time.time())}"})
        token = made.json()["token"]
    recovered = []
    address = before["paired"][0]
    for cut in range(POWER_CUTS):
        writer = Writer(rig.http_url, token, cut)
        await writer.start()
        async with rig.web() as client:
            named = (await device(client, address) or {}).get("userName")
            admin = Admin(client, address, cut)
            admin.start()
            writes = chance.randint(3, 15)  # the moment of the cut, counted in acknowledged writes

            async def busy(writer: Writer = writer, admin: Admin = admin, n: int = writes) -> bool:
                return len(writer.acked) >= n and bool(admin.users)
            await until(busy, 120, f"{writes} readings and a new user acknowledged")
            old = boot_id(rig)
            rig.strategy.transition("off")  # mid-write: the plug is pulled
            await asyncio.gather(writer.stop(), admin.stop())
        since = time.monotonic()
        await asyncio.to_thread(rig.strategy.transition, "ready")
        recovered.append(round(time.monotonic() - since, 1))
        assert boot_id(rig) != old
        check = rig.sh(DB_CHECK, sudo=True, check=False)
        assert "integrity ok" in check, f"power cut {cut + 1}: {check}"
        after = await snapshot(rig)
        where = f"power cut {cut + 1} after {writes} readings"
        assert set(before["paired"]) <= set(after["paired"]), f"{where}: {before} -> {after}"
        assert set(before["users"]) | set(admin.users) <= set(after["users"]), where
        assert not set(writer.acked) - await stored_temperatures(rig), where
        async with rig.web() as client:
            name = (await device(client, address) or {}).get("userName")
        last = admin.names[-1] if admin.names else named  # the last rename acknowledged
        assert name in {last, admin.in_flight}, f"{where}: {name!r}, acknowledged {last!r}"
        before = after
    rig.measurements["power_cut_to_ready_s"] = recovered


FILLER: Final = "$HOME/hil-filler"  # the maker's own files, on the same partition
DATA_DIR: Final = "/var/lib/appliance"


async def test_6_a_full_card_keeps_logins_and_stored_data_and_recovers_by_itself(rig: Rig) -> None:
    """The maker's own files fill the card until nothing is left for anyone but root: the
    appliance keeps serving and logging in, refuses readings with a reason, loses nothing, and
    goes on by itself once the space is back (README "A full SD card").

    Filled as a normal user, as a maker's files, a download or the app's own output would: ext4
    keeps its reserved blocks (5 %) for root, so the app (a normal user too) could not use the
    blocks its reserve gives back if root had taken those as well (CI showed exactly that: the
    login after the release still failed). README says what root filling the card does."""
    before = await snapshot(rig)
    async with rig.web() as client:
        made = await client.post("/api/tokens", json={"name": f"hil-full-{int(time.time())}"})
        publisher = {"Authorization": f"Bearer {made.json()['token']}"}
    reading = {"temperature": 42.5, "humidity": 50}
    try:
        free_blocks = f"$(stat -f -c %a {DATA_DIR})"
        rig.sh(f"fallocate -l $(( {free_blocks} * $(stat -f -c %S {DATA_DIR}) )) {FILLER} || true;"
               f" dd if=/dev/zero of={FILLER}.tail bs=4k status=none || true; sync", timeout=300)
        # Nothing left for anyone but root (and this proves the filler is on the data partition).
        assert rig.sh(f"stat -f -c %a {DATA_DIR}").strip() == "0", "the card is not full"
        async with httpx.AsyncClient(base_url=rig.http_url, timeout=20) as client:
            refused = await client.post("/api/temphum", json=reading, headers=publisher)
        assert refused.status_code == 503 and refused.json()["error"] == "storage_full", refused.text
        async with rig.web() as client:  # a new login: a session row, on the full card
            storage = (await client.get("/status")).json()["storage"]
            assert storage["full"] is True, storage
            page = await client.get("/", headers={"Accept": "text/html"})
            assert "The SD card is full" in page.text
        assert "integrity ok" in rig.sh(DB_CHECK, sudo=True, check=False)
    finally:
        rig.sh(f"rm -f {FILLER} {FILLER}.tail", check=False)

    async def stored_again() -> bool:
        async with httpx.AsyncClient(base_url=rig.http_url, timeout=20) as client:
            return (await client.post("/api/temphum", json=reading,
                                      headers=publisher)).status_code == 201
    await until(stored_again, 60, "readings stored again once the space is back")
    assert 42.5 in await stored_temperatures(rig)
    assert await snapshot(rig) == before


# --- 7: recovery ------------------------------------------------------------------------------------

def app_pid(rig: Rig) -> int | None:
    out = rig.sh("supervisorctl pid appliance", sudo=True, check=False).strip()
    return int(out) if out.isdigit() and out != "0" else None


async def test_7_killed_app_is_restarted_by_supervisor(rig: Rig) -> None:
    old = app_pid(rig)
    assert old
    since = time.monotonic()
    rig.sh(f"kill -9 {old}", sudo=True)

    async def restarted() -> bool:
        pid = await asyncio.to_thread(app_pid, rig)
        return bool(pid and pid != old)
    await until(restarted, 60, "supervisor restarting the app")
    await asyncio.to_thread(wait_ready, rig, 120)
    rig.measurements["app_kill_to_ready_s"] = round(time.monotonic() - since, 1)


async def test_7_scanning_resumes_after_bluetoothd_restarts(tuned: Rig) -> None:
    rig = tuned
    async with rig.web() as client:
        rig.sh("systemctl restart bluetooth", sudo=True)
        since = time.monotonic()

        async def scanning_and_fresh() -> bool:
            status = (await client.get("/status")).json()["bluetooth"]
            found = (await client.get("/devices")).json()["discovered"]
            fresh = [d for d in found if d["state"] in ("discovered", "connected")]
            return bool(status["scanning"] and fresh)

        # The beacons are advertising; after the restart they are reported again.
        seen_before = {d["id"]: d["lastSeen"] for d in (await client.get("/devices")).json()["discovered"]}

        async def reported_again() -> bool:
            found = (await client.get("/devices")).json()["discovered"]
            return any(d["lastSeen"] != seen_before.get(d["id"]) for d in found)

        await until(scanning_and_fresh, 120, "scanning after bluetoothd restarted")
        await until(reported_again, 120, "advertisements reported after bluetoothd restarted")
        rig.measurements["bluetoothd_restart_to_scanning_s"] = round(time.monotonic() - since, 1)


# --- 8: lab only: flash the beacon ------------------------------------------------------------------

@pytest.mark.lg_feature("lab")
def test_8_flash_the_beacon_and_its_version_matches_the_build(rig: Rig) -> None:
    subprocess.run([sys.executable, str(ROOT / "firmware" / "flash.py"), "--port", rig.beacons[0].port],
                   check=True, timeout=300)
    expected = (ROOT / "firmware" / "beacon" / "version.h").read_text()
    version = rig.beacons[0].command("version")
    firmware = version.split("firmware=")[1].split()[0]
    assert f'"{firmware}"' in expected, (version, expected)


# --- 9: virtual only: the printer, a stand-in on the host -------------------------------------------

@pytest.mark.lg_feature("virtual")
async def test_9_the_printer_on_the_host_reaches_a_browser_through_nginx(
        rig: Rig, tmp_path: Path) -> None:
    """The stand-in printer (mosquitto over TLS, the player, the TLS camera) runs on the host; the
    twin reaches it at PRINTER_GUEST_ADDRESS through QEMU's guestfwd, set up from the Settings
    page's routes as a maker would. Its state and camera frames reach a browser through nginx."""
    from appliance_sim.printer.standin import Standin

    code = base64.b32encode(os.urandom(5)).decode()  # 8 characters, like the A1's
    ports = rig.power.printer_ports
    standin = Standin(tmp_path / "printer", code, mqtt_port=ports["mqtt"],
                      camera_port=ports["camera"], frame_interval_s=0.5)
    await standin.start()
    try:
        async with rig.web() as client:
            saved = await client.put("/api/printer/access-code", json={"accessCode": code})
            assert saved.status_code == 200, saved.text
            linked = await client.put("/api/printer/address",
                                      json={"host": rig.power.printer_address, "serial": standin.serial})
            assert linked.status_code == 200, linked.text
            async with rig.browser(client) as browser:
                since = time.monotonic()
                _, state = await browser.wait_event(
                    "printer2v", lambda p: p["connected"] and p["job"], within=180)
                assert state["job"] == "stand-in benchy.3mf"
                _, frame = await browser.wait_event(
                    "image2v", lambda f: f["mime"] == "image/jpeg", within=120, since=since)
                assert frame["image"][:2] == b"\xff\xd8"  # a JPEG, from the camera over TLS
                await standin.printer.partial(gcode_state="RUNNING", layer_num=7,
                                              total_layer_num=90, mc_percent=8)
                await browser.wait_event("printer2v", lambda p: p["layer"] == 7, within=60)
            status = (await client.get("/status")).json()["printer"]
            assert status["mqtt"]["connected"] and status["camera"]["connected"], status
            assert status["tls"]["pinned"], status
            rig.measurements["printer_link_s"] = round(time.monotonic() - since, 1)
            unlinked = await client.put("/api/printer/address", json={"host": "", "serial": ""})
            assert unlinked.status_code == 200, unlinked.text
        logs = rig.sh("cat /var/log/supervisor/*.log /var/log/nginx/*.log 2>/dev/null; "
                      "journalctl --no-pager -q 2>/dev/null | tail -n 2000", sudo=True, check=False)
        assert code not in logs  # the access code is in no log on the appliance
    finally:
        await standin.stop()


# --- 10: virtual only: a satellite scanner beside the twin -------------------------------------------

SATELLITE: Final = "hall"
# A beacon id the twin's own air does not have (it has 1 and 2): only the satellite hears it.
SATELLITE_BEACON: Final = 9
MQTT_MARK: Final = "# --- HIL scenario 10: the broker of the makerspace ---"
MQTT_PASSWORD_FILE: Final = "/etc/appliance/hil-mqtt-password"


async def _scanner_listed(client: Any, online: bool) -> dict[str, Any] | None:
    listed = (await client.get("/api/scanners")).json()["scanners"]
    found = next((s for s in listed if s["id"] == SATELLITE), None)
    return found if found and found["online"] is online else None


@pytest.mark.lg_feature("virtual")
async def test_10_a_satellite_scanner_beside_the_twin_shows_its_beacon_in_its_room(
        tuned: Rig, tmp_path: Path) -> None:
    """The makerspace's own broker (Debian's mosquitto on the host; the twin reaches it at
    BROKER_GUEST_ADDRESS:1883 through guestfwd, as one on the LAN) and a satellite scanner on the
    host (tests/hil/satellite.py: the appliance's Scanner on a virtual radio with one beacon the
    twin's radio cannot hear), issued on the twin with `appliance scanner add` as a maker would.
    The beacon is present on the twin in the satellite's area, a pairing of it holds through the
    satellite alone, and the scanner's death (SIGKILL) is seen through its last-will; with no
    scanner hearing it, the paired beacon goes away."""
    from appliance_sim.air import beacon_address
    from appliance_sim.printer.broker import StandinBroker

    rig = tuned
    address = beacon_address(SATELLITE_BEACON)
    app = f"sudo -u appliance /opt/appliance/bin/appliance --config {APP_CONFIG}"
    hall_password = rig.sh(f"{app} scanner add {SATELLITE} --area {SATELLITE}").strip()
    # The twin's own broker password, made on the twin and read back, so it is in no command line.
    block = "\n".join([MQTT_MARK, f'mqtt_url = "mqtt://hub@{rig.power.broker_address}:1883"',
                       f'mqtt_password_file = "{MQTT_PASSWORD_FILE}"'])
    rig.sh(f"umask 077 && head -c 10 /dev/urandom | base32 > {MQTT_PASSWORD_FILE} && "
           f"chown appliance: {MQTT_PASSWORD_FILE} && printf '%s\\n' '{block}' >> {APP_CONFIG}",
           sudo=True)
    hub_password = rig.sh(f"cat {MQTT_PASSWORD_FILE}", sudo=True).strip()
    (tmp_path / "broker").mkdir()
    broker = StandinBroker(tmp_path / "broker", None, {"hub": hub_password, SATELLITE: hall_password},
                           rig.power.broker_port)
    satellite: asyncio.subprocess.Process | None = None
    try:
        await broker.start()
        await asyncio.to_thread(restart_app, rig)
        password_file = tmp_path / "hall-password"
        password_file.write_text(hall_password + "\n")
        password_file.chmod(0o600)
        async with rig.web() as client:
            async def on_broker() -> bool:
                return bool((await client.get("/status")).json()["mqtt"]["connected"])
            await until(on_broker, 120, "the twin on the makerspace's broker")
            since = time.monotonic()
            satellite = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.hil.satellite", "--port", str(broker.port),
                "--user", SATELLITE, "--password-file", str(password_file),
                "--beacon", str(SATELLITE_BEACON), cwd=ROOT)

            async def in_the_hall() -> dict[str, Any] | None:
                found = await device(client, address)
                return found if found and (found["area"], found["scanner"]) == (SATELLITE, SATELLITE) \
                    else None
            await until(in_the_hall, 120, f"{address} in the area {SATELLITE} in GET /devices")
            rig.measurements["satellite_sighting_s"] = round(time.monotonic() - since, 1)
            listed = await until(lambda: _scanner_listed(client, True), 60, "the satellite online")
            assert listed["beaconCount"] == 1 and listed["lastSeen"], listed
            paired = await client.post("/pair", json={"deviceId": address, "userId": USER,
                                                      "userName": "HIL hall"})
            assert paired.status_code == 200, paired.text
            # Present through the satellite alone: connected, without a GATT link from the twin.
            found = await wait_state(client, address, "connected", 30)
            assert found["isConnected"] is False and found["scanner"] == SATELLITE, found
            satellite.kill()  # its plug pulled: no "offline" of its own, the broker's last-will
            await asyncio.wait_for(satellite.wait(), 30)
            await until(lambda: _scanner_listed(client, False), 60, "the satellite's last-will")
            await wait_state(client, address, "away", 60)
            unpaired = await client.post("/unpair", json={"deviceId": address})
            assert unpaired.status_code == 200, unpaired.text
        logs = rig.sh("cat /var/log/supervisor/*.log 2>/dev/null", sudo=True, check=False)
        assert f"Connect to {address}" not in logs  # the twin's radio never tried to link to it
        assert hub_password not in logs and hall_password not in logs
    finally:
        if satellite and satellite.returncode is None:
            satellite.kill()
            await asyncio.wait_for(satellite.wait(), 30)
        await broker.stop()
        rig.sh(f"sed -i '/^{MQTT_MARK}$/,$d' {APP_CONFIG} && rm -f {MQTT_PASSWORD_FILE}",
               sudo=True, check=False)
