"""The printer's state: reports merged into one dict, read into a typed snapshot.

Pure functions, no I/O: a report is partial (the A1 sends only what changed, plus a full report
after ``pushall``), so every report is merged into the held dict before the snapshot is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

# gcode_state values the printer sends (ha-bambulab and OpenBambuAPI list the same set).
GCODE_STATES: Final = frozenset({"IDLE", "PREPARE", "RUNNING", "PAUSE", "FINISH", "FAILED", "SLICING",
                                 "INIT", "OFFLINE", "UNKNOWN"})
CHAMBER_LIGHT: Final = "chamber_light"


def merge_report(held: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """``report`` merged into ``held`` (in place, returned): nested dicts merge, the rest replaces.

    Lists replace as a whole except ``lights_report``, whose entries merge by ``node``: the A1
    reports one light at a time.
    """
    for key, value in report.items():
        old = held.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merge_report(old, value)
        elif key == "lights_report" and isinstance(value, list) and isinstance(old, list):
            by_node = {item.get("node"): item for item in old if isinstance(item, dict)}
            for item in value:
                if isinstance(item, dict):
                    by_node[item.get("node")] = {**by_node.get(item.get("node"), {}), **item}
            held[key] = list(by_node.values())
        else:
            held[key] = value
    return held


@dataclass(frozen=True, slots=True)
class PrinterState:
    """What ``GET /api/printer`` and ``printer2v`` carry (see ``as_payload``)."""

    connected: bool = False
    state: str | None = None
    progress: int | None = None
    layer: int | None = None
    total_layers: int | None = None
    remaining_min: int | None = None
    nozzle_temp: float | None = None
    nozzle_target: float | None = None
    bed_temp: float | None = None
    bed_target: float | None = None
    job: str | None = None
    light_on: bool | None = None
    last_error: str | None = None
    last_seen: datetime | None = None

    def status_line(self) -> str:
        """One readable line for ``status2v``: ``RUNNING 42% layer 17/230``."""
        if not self.connected and self.state is None:
            return "printer not connected"
        parts = [self.state or "UNKNOWN"]
        if self.state in ("PREPARE", "RUNNING", "PAUSE") and self.progress is not None:
            parts.append(f"{self.progress}%")
        if self.state in ("RUNNING", "PAUSE") and self.layer is not None and self.total_layers:
            parts.append(f"layer {self.layer}/{self.total_layers}")
        if not self.connected:
            parts.append("(printer not connected)")
        return " ".join(parts)

    def as_payload(self, time_format: Any) -> dict[str, Any]:
        return {
            "connected": self.connected, "state": self.state, "progress": self.progress,
            "layer": self.layer, "totalLayers": self.total_layers, "remainingMin": self.remaining_min,
            "nozzleTemp": self.nozzle_temp, "nozzleTarget": self.nozzle_target,
            "bedTemp": self.bed_temp, "bedTarget": self.bed_target, "job": self.job,
            "lightOn": self.light_on, "lastError": self.last_error,
            "lastSeen": time_format(self.last_seen) if self.last_seen else None,
        }


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return round(float(value), 1)
    try:
        return round(float(str(value)), 1) if value is not None else None
    except ValueError:
        return None


def _text(value: object, limit: int = 200) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    # One printable line: the job name reaches the status history and the dashboard.
    return "".join(ch for ch in value.strip() if ch.isprintable())[:limit] or None


def _light(lights: object) -> bool | None:
    if not isinstance(lights, list):
        return None
    for item in lights:
        if isinstance(item, dict) and item.get("node") == CHAMBER_LIGHT:
            return str(item.get("mode", "")).lower() == "on"
    return None


def read_state(held: dict[str, Any], *, connected: bool, last_error: str | None,
               last_seen: datetime | None) -> PrinterState:
    """The snapshot of the merged reports; fields the printer has not sent yet are None."""
    report = held.get("print")
    p: dict[str, Any] = report if isinstance(report, dict) else {}
    state = p.get("gcode_state")
    return PrinterState(
        connected=connected,
        state=state.upper() if isinstance(state, str) and state.upper() in GCODE_STATES else None,
        progress=_int(p.get("mc_percent")), layer=_int(p.get("layer_num")),
        total_layers=_int(p.get("total_layer_num")), remaining_min=_int(p.get("mc_remaining_time")),
        nozzle_temp=_float(p.get("nozzle_temper")), nozzle_target=_float(p.get("nozzle_target_temper")),
        bed_temp=_float(p.get("bed_temper")), bed_target=_float(p.get("bed_target_temper")),
        job=_text(p.get("subtask_name")), light_on=_light(p.get("lights_report")),
        last_error=last_error, last_seen=last_seen,
    )
