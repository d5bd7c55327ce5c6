"""The HIL suite's rig: labgrid's environment (``--lg-env tests/hil/rigs/RIG.yaml``) walked to
ready by its ApplianceStrategy and made into one ``Rig`` for the scenarios; the report's build id,
firmware version and measurements.

`make hil-test` passes ``--lg-env``; without it the scenarios fail (they never skip silently).
Tests that only one rig can run carry ``@pytest.mark.lg_feature("lab")`` / ``("virtual")``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from .rig import BeaconSerial, Rig

ROOT: Final = Path(__file__).resolve().parents[2]
MEASUREMENTS: Final = ROOT / "build" / "hil-measurements.json"
# After SSH answers: first boot (admin, SSH key), then supervisor starts nginx and the app.
READY_S: Final = 300.0

# The scenarios shorten the presence timings (README "Settings") so that leaving and coming back
# take seconds; the block is removed again after the run.
TEST_SETTINGS: Final = {"away_after_s": 5, "reconnect_window_s": 20, "forget_after_s": 30}
SETTINGS_FILE: Final = "/etc/appliance/appliance.toml"
MARK: Final = "# --- HIL suite settings (removed after the run) ---"
DIAGNOSTICS: Final = ROOT / "build" / "hil" / "diagnostics"
# What a failed scenario leaves behind: the guest's journal is in memory only, so it is read now.
GUEST_DIAGNOSTICS: Final = (
    "supervisorctl status",
    "journalctl -b --no-pager -n 120 -o short-monotonic",
    "timeout 10 bluetoothctl devices",
)
_RIGS: list[Rig] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed scenario's report carries the guest's state (CI prints it), and a file keeps it."""
    report = yield
    if call.when == "call" and report.failed and _RIGS:
        parts = []
        for command in GUEST_DIAGNOSTICS:
            try:
                parts.append(f"$ {command}\n{_RIGS[0].sh(command, sudo=True, check=False)}")
            except Exception as exc:  # noqa: BLE001 - a dead guest is itself the diagnosis
                parts.append(f"$ {command}\n(could not run: {exc!r})")
        text = "\n".join(parts)
        DIAGNOSTICS.mkdir(parents=True, exist_ok=True)
        (DIAGNOSTICS / f"{item.name}.txt").write_text(text)
        report.sections.append(("guest diagnostics", text))
    return report


def wait_ready(rig: Rig, within: float = READY_S) -> dict[str, str]:
    """supervisor runs the app and nginx, and /health answers through nginx (the strategy's check)."""
    return dict(rig.strategy.wait_ready(within))


@pytest.fixture(scope="session")
def rig(request: pytest.FixtureRequest, record_testsuite_property: Any) -> Iterator[Rig]:
    if not request.config.getoption("lg_env", None):
        pytest.fail("the HIL scenarios need a rig: make hil-test (RIG=virtual|lab), i.e. "
                    "python -m pytest tests/hil --lg-env tests/hil/rigs/virtual.yaml")
    # labgrid's fixture: the target's Strategy, ApplianceStrategy (labgrid_rigs.py, which labgrid
    # imports from the rig's YAML).
    strategy = request.getfixturevalue("strategy")
    target = strategy.target
    features = target.env.get_features() | target.env.get_target_features()
    started = time.monotonic()
    strategy.transition("ready")
    boot_to_ready_s = round(time.monotonic() - started, 1)
    if strategy.radio is not None:  # the virtual rig: the sketch beacons' ptys
        ports = strategy.radio.serial_ports()
    else:  # the lab rig: the Nano on USB
        ports = [target.get_resource("USBSerialPort").port]
    option = target.env.config.get_option
    rig = Rig(features=features, ssh=strategy.ssh, power=strategy.power, target=target,
              http_url=strategy.http_url, admin_user=option("admin_user"),
              admin_password=option("admin_password"),
              beacons=[BeaconSerial(port) for port in ports], strategy=strategy)
    rig.measurements["boot_to_ready_s"] = boot_to_ready_s
    _RIGS.append(rig)

    release = dict(line.split("=", 1) for line in rig.sh("cat /etc/appliance-release").splitlines()
                   if "=" in line)
    build_id = release.get("BUILD_ID", "?").strip('"')
    firmware = rig.beacons[0].command("version").removeprefix("ok ") if rig.beacons else "no beacon"
    record_testsuite_property("rig", "virtual" if "virtual" in features else "lab")
    record_testsuite_property("image_build_id", build_id)
    record_testsuite_property("firmware_version", firmware)
    rig.measurements.update({"image_build_id": build_id, "firmware_version": firmware})
    yield rig

    if hasattr(rig.power, "boots"):
        rig.measurements["boot_to_login_s"] = [round(s, 1) for s in rig.power.boots]
    for key, value in rig.measurements.items():
        if key not in ("image_build_id", "firmware_version"):
            record_testsuite_property(key, json.dumps(value))
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    MEASUREMENTS.write_text(json.dumps(rig.measurements, indent=2) + "\n")
    print("\nHIL measurements:\n" + json.dumps(rig.measurements, indent=2))


@pytest.fixture(scope="session")
def tuned(rig: Rig) -> Iterator[Rig]:
    """The rig with the presence timings shortened (TEST_SETTINGS), restored afterwards."""
    block = "\n".join([MARK, *(f"{key} = {value}" for key, value in TEST_SETTINGS.items())])
    rig.sh(f"sed -i '/^{MARK}$/,$d' {SETTINGS_FILE} && printf '%s\\n' '{block}' >> {SETTINGS_FILE}",
           sudo=True)
    restart_app(rig)
    yield rig
    rig.sh(f"sed -i '/^{MARK}$/,$d' {SETTINGS_FILE}", sudo=True, check=False)
    restart_app(rig)


def restart_app(rig: Rig) -> None:
    rig.sh("supervisorctl restart appliance", sudo=True)
    wait_ready(rig, within=120)
