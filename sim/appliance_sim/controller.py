"""bumble's controller and link with the fixes a real host needs, and the radio path model.

``VirtualController`` and ``VirtualLink`` carry fixes for bumble 0.0.236 gaps plus the radio path
model (RSSI, loss): the in-process VirtualRadio's central, every simulated beacon and the virtual
rig's guest controller (tests/hil/guest_controller.py) run on them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from bumble import core, hci, ll
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

_LOGGER = logging.getLogger(__name__)

# Every HCI command is answered within a few loop iterations in-process; 2 s means "stack broken".
COMMAND_TIMEOUT_S: Final = 2.0
# A controller's LE event mask until the host sets one: the first five events (Core 5.4, Vol 4,
# Part E, 7.8.1). bumble starts at 0, as if nothing were unmasked.
LE_EVENT_MASK_DEFAULT: Final = 0x1F
# LE event mask bit n unmasks LE subevent n + 1 (7.8.1). When the host unmasked an enhanced
# connection complete event, the controller must send it instead of the legacy one (7.7.65.10):
# Linux waits for exactly that event after LE Create Connection (up to its 20 s connection
# timeout), with every later HCI request, disconnects included, queued behind the wait.
LE_ENHANCED_CONNECTION_COMPLETE_BIT: Final = 1 << (hci.HCI_LE_ENHANCED_CONNECTION_COMPLETE_EVENT - 1)
LE_ENHANCED_CONNECTION_COMPLETE_V2_BIT: Final = 1 << (hci.HCI_LE_ENHANCED_CONNECTION_COMPLETE_V2_EVENT - 1)
# "Not applicable" in LE Enhanced Connection Complete [v2]: the link came from legacy advertising.
_NO_ADVERTISING_HANDLE: Final = 0xFF
_NO_SYNC_HANDLE: Final = 0xFFFF

ReceptionModel = Callable[[hci.Address], int | None]
"""RSSI for one received advertisement from an address, or None when the packet is lost."""


class VirtualLink(LocalLink):
    """bumble's LocalLink, tagging LE ACL data with the connection's own address."""

    def send_acl_data(
        self, sender_controller: Controller, destination_address: hci.Address,
        transport: core.PhysicalTransport, data: bytes,
    ) -> None:
        connection = sender_controller.le_connections.get(destination_address)
        if transport != core.PhysicalTransport.LE or connection is None:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        destination = self.find_le_controller(destination_address)
        if destination is not None:
            source = connection.self_address
            asyncio.get_running_loop().call_soon(
                destination.on_link_acl_data, source, transport, data
            )


class VirtualController(Controller):
    """A legacy-advertising (Bluetooth 4.2 style) controller with a radio path model.

    Rewrites what bumble's controller would report: the RSSI comes from ``reception`` (which may
    also drop the packet), the scan response is the advertiser's real one, a cancelled
    connection attempt completes with an error as the spec requires, a connection completes with
    the LE Enhanced Connection Complete event when the host unmasked it, Read Remote Version
    Information is answered, and a command bumble does not know gets a Command Status instead of
    silence (a host such as Linux would wait for it until its command timeout).
    """

    le_event_mask = LE_EVENT_MASK_DEFAULT

    # Without extended advertising, hosts use legacy advertising, scanning and connections.
    le_features = Controller.le_features & ~(
        hci.LeFeatureMask.LE_EXTENDED_ADVERTISING | hci.LeFeatureMask.LE_PERIODIC_ADVERTISING
    )

    def __init__(
        self, name: str, link: LocalLink, public_address: str,
        reception: ReceptionModel | None = None,
    ) -> None:
        super().__init__(name, link=link, public_address=public_address)
        self.reception = reception

    def on_hci_le_set_advertising_parameters_command(self, command: Any) -> Any:
        result = super().on_hci_le_set_advertising_parameters_command(command)
        # bumble's advertiser timer reads the interval as ms; HCI gives it in 0.625 ms units.
        advertiser = self.le_legacy_advertiser
        advertiser.advertising_interval_min = round(command.advertising_interval_min * 0.625)
        return result

    def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        # After the Command Complete: that is the order a real controller uses.
        asyncio.get_running_loop().call_soon(
            self.send_hci_packet,
            hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0, role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address.address_type,
                peer_address=pending.peer_address, connection_interval=0,
                peripheral_latency=0, supervision_timeout=0, central_clock_accuracy=0,
            ),
        )
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_LE_Connection_Complete_Event):
            packet = self._connection_complete_for_host(packet)
        super().send_hci_packet(packet)

    def _connection_complete_for_host(self, event: hci.HCI_LE_Connection_Complete_Event) -> hci.HCI_Packet:
        """bumble always sends the legacy event; the spec wants the newest one the host unmasked."""
        mask = self.le_event_mask
        if not mask & (LE_ENHANCED_CONNECTION_COMPLETE_BIT | LE_ENHANCED_CONNECTION_COMPLETE_V2_BIT):
            return event
        fields: dict[str, Any] = {
            "status": event.status, "connection_handle": event.connection_handle, "role": event.role,
            "peer_address_type": event.peer_address_type, "peer_address": event.peer_address,
            # No address resolution in the controller: both resolvable addresses are "none".
            "local_resolvable_private_address": hci.Address.ANY_RANDOM,
            "peer_resolvable_private_address": hci.Address.ANY_RANDOM,
            "connection_interval": event.connection_interval,
            "peripheral_latency": event.peripheral_latency,
            "supervision_timeout": event.supervision_timeout,
            "central_clock_accuracy": event.central_clock_accuracy,
        }
        if mask & LE_ENHANCED_CONNECTION_COMPLETE_V2_BIT:
            return hci.HCI_LE_Enhanced_Connection_Complete_V2_Event(
                **fields, advertising_handle=_NO_ADVERTISING_HANDLE, sync_handle=_NO_SYNC_HANDLE
            )
        return hci.HCI_LE_Enhanced_Connection_Complete_Event(**fields)

    def on_hci_command(self, command: hci.HCI_Command) -> Any:
        if isinstance(command, hci.HCI_SyncCommand):
            return super().on_hci_command(command)  # a Command Complete saying "unknown command"
        # bumble answers nothing to the other commands it lacks; the spec allows a Command Status.
        _LOGGER.warning("%s: unsupported HCI command %s", self.name, command.name)
        self._send_hci_command_status(hci.HCI_ErrorCode.UNKNOWN_HCI_COMMAND_ERROR, command.op_code)
        return None

    def on_hci_read_remote_version_information_command(self, command: Any) -> None:
        connection = self.find_le_connection_by_handle(command.connection_handle)
        if connection is None:
            self._send_hci_command_status(
                hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR, command.op_code
            )
            return
        self._send_hci_command_status(hci.HCI_COMMAND_STATUS_PENDING, command.op_code)
        remote = self.link.find_le_controller(connection.peer_address) or self
        self.send_hci_packet(hci.HCI_Read_Remote_Version_Information_Complete_Event(
            status=hci.HCI_ErrorCode.SUCCESS, connection_handle=connection.handle,
            version=remote.lmp_version, manufacturer_name=remote.manufacturer_company_identifier,
            subversion=remote.lmp_subversion,
        ))

    def on_advertising_pdu(self, pdu: Any) -> None:
        if not isinstance(pdu, ll.AdvInd):
            super().on_advertising_pdu(pdu)
            return
        address = pdu.advertiser_address
        rssi = -50 if self.reception is None else self.reception(address)
        if rssi is None:
            return  # lost: neither reported nor connected to
        if self.le_scan_enable:
            report_type = hci.HCI_LE_Advertising_Report_Event.EventType
            reports = [(report_type.ADV_IND, pdu.data)]
            advertiser = self.link.find_le_controller(address)
            response = advertiser.le_legacy_advertiser.scan_response_data if advertiser else b""
            if response and self.le_scan_type == hci.HCI_LE_Set_Scan_Parameters_Command.ACTIVE_SCANNING:
                reports.append((report_type.SCAN_RSP, response))
            for event_type, data in reports:
                report = hci.HCI_LE_Advertising_Report_Event.Report(
                    event_type=event_type, address_type=address.address_type,
                    address=address, data=data, rssi=rssi,
                )
                self.send_hci_packet(hci.HCI_LE_Advertising_Report_Event([report]))
        pending = self.pending_le_connection
        if pending is not None and pending.peer_address == address:
            self.create_le_connection(address)


def new_device(name: str, address: str, controller: Controller) -> Device:
    """A bumble host stack on ``controller`` (in-process, no transport)."""
    return Device(
        name=name, address=hci.Address(address), host=Host(controller, AsyncPipeSink(controller))
    )
