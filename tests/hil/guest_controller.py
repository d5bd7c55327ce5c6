"""The virtual rig guest's Bluetooth controller: a VirtualController whose host is outside this process.

Everything bumble 0.0.236 gets wrong for a Linux host on the far end of a serial port is fixed in
``VirtualController``/``VirtualLink`` (appliance_sim/controller.py): LE ACL data tagged with
the connection's own (here public) address, LE Enhanced Connection Complete when unmasked, RSSI
from the path model, the advertiser's real scan response. What only an external host needs is here:
an HCI Reset (the guest boots or re-attaches) and a lost host (QEMU killed: a power cut) put the
controller back to its power-on state, which bumble's controller never does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Final

from bumble import core, hci, ll
from bumble.link import LocalLink

from appliance_sim.controller import LE_EVENT_MASK_DEFAULT, ReceptionModel, VirtualController

_LOGGER = logging.getLogger(__name__)

# The controller's public address, as a Pi's Bluetooth chip has one. BlueZ treats 00:00:00:00:00:00
# as "no address" (the controller stays unconfigured), and Linux connects from the public address,
# which is why VirtualLink must tag data with the connection's address. VirtualRadio's central is
# 00:AA:00:00:00:01; this one differs so logs tell them apart.
GUEST_PUBLIC_ADDRESS: Final = "00:AA:00:00:00:02"
# The event mask after power-on and HCI Reset (Core 5.4, Vol 4, Part E, 7.3.1).
EVENT_MASK_DEFAULT: Final = 0x0000_1FFF_FFFF_FFFF
# What a beacon sees when the Pi's controller resets or loses power: its link times out.
LINK_LOST_REASON: Final = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR


@dataclasses.dataclass(frozen=True, slots=True)
class ControllerState:
    """What the host has made of the controller, for the rig's tests and logs."""

    attached: bool
    scanning: bool
    le_event_mask: int
    links: tuple[str, ...]  # the peer addresses of the open LE connections


class GuestController(VirtualController):
    """The controller BlueZ drives in the guest (``btattach -P h4``), on the beacons' link."""

    def __init__(
        self, link: LocalLink, reception: ReceptionModel,
        public_address: str = GUEST_PUBLIC_ADDRESS,
    ) -> None:
        super().__init__("guest", link, public_address, reception=reception)

    @property
    def state(self) -> ControllerState:
        return ControllerState(
            attached=self.host is not None, scanning=self.le_scan_enable,
            le_event_mask=self.le_event_mask,
            links=tuple(address.to_string(False) for address in self.le_connections),
        )

    def on_hci_reset_command(self, command: Any) -> Any:
        self.power_cycle("HCI Reset")
        return super().on_hci_reset_command(command)

    def host_lost(self) -> None:
        """The host's end of the transport closed: no more events go anywhere."""
        self.host = None
        self.power_cycle("host lost")

    def power_cycle(self, why: str) -> None:
        """Back to the power-on state: no links (each peer sees its link time out), no scan."""
        for connection in list(self.le_connections.values()):
            with contextlib.suppress(core.InvalidArgumentError):  # the peer left the link already
                connection.send_ll_control_pdu(ll.TerminateInd(LINK_LOST_REASON))
        if self.le_connections:
            _LOGGER.info("Controller %s (%s): dropped links to %s", self.name, why,
                         ", ".join(str(address) for address in self.le_connections))
        self.le_connections.clear()
        self.pending_le_connection = None
        self.le_scan_enable = False
        self.filter_duplicates = False
        self.le_legacy_advertiser.stop()
        for advertising_set in self.advertising_sets.values():
            advertising_set.stop()
        self.advertising_sets.clear()
        self.event_mask = EVENT_MASK_DEFAULT
        self.event_mask_page_2 = 0
        self.le_event_mask = LE_EVENT_MASK_DEFAULT
        self.random_address = hci.Address.ANY_RANDOM
