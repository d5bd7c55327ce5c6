"""When a print starts, changes layer and ends, from the printer's state: pure, no I/O.

A print starts when ``gcode_state`` becomes RUNNING and ends at FINISH or FAILED; a cancelled
print goes to FAILED or straight back to IDLE, which ends it too. PAUSE keeps it going. A state
the appliance does not know (the printer away) changes nothing: the print may well go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PRINTING: Final = frozenset({"RUNNING", "PAUSE"})
ENDED: Final = frozenset({"FINISH", "FAILED", "IDLE"})


@dataclass(frozen=True, slots=True)
class Change:
    started: bool = False  # a print began (after ``ended`` when one print followed another)
    ended: bool = False
    new_layer: bool = False  # printing, at a layer it had not reached yet


@dataclass(slots=True)
class PrintWatcher:
    printing: bool = False
    job: str | None = None
    layer: int = 0

    def observe(self, state: str | None, layer: int | None, job: str | None) -> Change:
        if state in PRINTING:
            if not self.printing or (job is not None and self.job is not None and job != self.job):
                ended = self.printing  # a new job without its predecessor's end being seen
                self.printing, self.job, self.layer = True, job, layer or 0
                return Change(started=True, ended=ended, new_layer=bool(layer))
            self.job = self.job or job
            if layer is not None and layer > self.layer:
                self.layer = layer
                return Change(new_layer=state == "RUNNING")
            return Change()
        if state in ENDED and self.printing:
            self.printing, self.layer = False, 0
            return Change(ended=True)
        return Change()
