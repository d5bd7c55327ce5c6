"""The printer link's pure parts: merging partial reports, the status line, backoff, the camera's
auth packet, the access code file and the certificate policy."""

from __future__ import annotations

import random
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.printer.backoff import Backoff
from appliance.printer.camera import auth_packet
from appliance.printer.errors import PrinterError, read_access_code, write_access_code
from appliance.printer.model import merge_report, read_state
from appliance.printer.trust import CertificateRefused, PrinterTrust, fingerprint
from appliance.schema import api_time


def test_partial_reports_merge_into_the_state_held() -> None:
    held: dict[str, object] = {}
    merge_report(held, {"print": {"gcode_state": "RUNNING", "layer_num": 3, "total_layer_num": 10,
                                  "mc_percent": 30, "lights_report": [
                                      {"node": "chamber_light", "mode": "off"},
                                      {"node": "work_light", "mode": "on"}]}})
    merge_report(held, {"print": {"nozzle_temper": 215.54,
                                  "lights_report": [{"node": "chamber_light", "mode": "on"}]}})
    state = read_state(held, connected=True, last_error=None, last_seen=None)
    assert (state.state, state.layer, state.total_layers, state.progress) == ("RUNNING", 3, 10, 30)
    assert state.nozzle_temp == 215.5
    assert state.light_on is True
    assert held["print"]["lights_report"][1] == {"node": "work_light", "mode": "on"}  # type: ignore[index]


def test_unknown_or_odd_values_read_as_missing() -> None:
    state = read_state({"print": {"gcode_state": "DANCING", "mc_percent": "x", "bed_temper": True,
                                  "subtask_name": "a\nb\x00c"}},
                       connected=False, last_error="boom", last_seen=None)
    assert state.state is None and state.progress is None and state.bed_temp is None
    assert state.job == "abc"


def test_status_line_is_one_readable_line() -> None:
    running = read_state({"print": {"gcode_state": "RUNNING", "mc_percent": 42, "layer_num": 17,
                                    "total_layer_num": 230}}, connected=True, last_error=None,
                         last_seen=None)
    assert running.status_line() == "RUNNING 42% layer 17/230"
    idle = read_state({"print": {"gcode_state": "IDLE", "mc_percent": 100}}, connected=True,
                      last_error=None, last_seen=None)
    assert idle.status_line() == "IDLE"
    gone = read_state({"print": {"gcode_state": "FINISH"}}, connected=False, last_error=None,
                      last_seen=None)
    assert gone.status_line() == "FINISH (printer not connected)"


def test_payload_has_the_issue_fields() -> None:
    when = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    payload = read_state({}, connected=True, last_error=None, last_seen=when).as_payload(api_time)
    assert set(payload) == {"connected", "state", "progress", "layer", "totalLayers", "remainingMin",
                            "nozzleTemp", "nozzleTarget", "bedTemp", "bedTarget", "job", "lightOn",
                            "lastError", "lastSeen"}
    assert payload["lastSeen"] == api_time(when)


def test_backoff_doubles_with_jitter_up_to_its_bound_and_resets() -> None:
    backoff = Backoff(first_s=1.0, max_s=8.0, jitter=0.3, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, nominal in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert nominal * 0.7 <= delay <= nominal
    assert len({round(d, 6) for d in delays[3:]}) == 3  # jittered, not in step
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_camera_auth_packet_is_80_bytes_in_the_printers_layout() -> None:
    packet = auth_packet("12345678")
    assert len(packet) == 80
    assert packet[:16] == bytes.fromhex("40000000" "00300000" "00000000" "00000000")
    assert packet[16:48] == b"bblp" + b"\0" * 28
    assert packet[48:] == b"12345678" + b"\0" * 24
    with pytest.raises(PrinterError):
        auth_packet("x" * 33)


def test_access_code_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "code"
    with pytest.raises(PrinterError, match="no access code"):
        read_access_code(path)
    write_access_code(path, "abcd1234")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_access_code(path) == "abcd1234"
    path.chmod(0o644)
    with pytest.raises(PrinterError, match="chmod 600") as caught:
        read_access_code(path)
    assert "abcd1234" not in str(caught.value)


def test_pin_trusts_the_first_certificate_and_refuses_a_changed_one(tmp_path: Path) -> None:
    trust = PrinterTrust("pin", tmp_path, "SERIAL0001")
    trust.check(b"first certificate")
    assert trust.pinned == fingerprint(b"first certificate")
    trust.check(b"first certificate")
    with pytest.raises(CertificateRefused, match="certificate changed"):
        trust.check(b"second certificate")
    assert isinstance(CertificateRefused("x"), ssl.SSLError)  # paho and asyncio see a TLS failure
    assert trust.problem and "certificate changed" in trust.problem
    with pytest.raises(PrinterError):
        trust.trust_offered(fingerprint(b"someone else"))
    trust.trust_offered(fingerprint(b"second certificate"))
    assert trust.pinned == fingerprint(b"second certificate") and trust.problem is None
    trust.check(b"second certificate")


def test_a_ca_file_needs_the_serial_as_the_name(tmp_path: Path) -> None:
    trust = PrinterTrust(str(tmp_path / "ca.pem"), tmp_path, "SERIAL0001")
    trust.check(b"der", {"subject": ((("commonName", "SERIAL0001"),),)})
    with pytest.raises(CertificateRefused, match="not the printer"):
        trust.check(b"der", {"subject": ((("commonName", "OTHER"),),)})
