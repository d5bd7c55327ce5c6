"""The beacon protocol: one definition, checked against the firmware's header and real bleak types."""

from __future__ import annotations

from pathlib import Path

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from appliance.presence import protocol
from appliance.presence.radio import advertisement_from_bleak

HEADER = Path(__file__).parent.parent / "firmware" / "beacon" / "protocol.h"


def test_firmware_header_is_generated_from_the_python_definition() -> None:
    assert HEADER.read_text() == protocol.c_header(), (
        "firmware/beacon/protocol.h is stale: run "
        "`python -m appliance.presence.protocol --header > firmware/beacon/protocol.h`")


@pytest.mark.parametrize(("beacon_id", "counter", "uptime", "hex_"), protocol.PAYLOAD_VECTORS)
def test_payload_vectors_round_trip(beacon_id: int, counter: int, uptime: int, hex_: str) -> None:
    payload = protocol.BeaconPayload(beacon_id, counter, uptime)
    assert payload.pack().hex() == hex_
    assert protocol.parse_payload(bytes.fromhex(hex_)) == payload


def test_advertising_data_fits_legacy_advertising_and_the_name_goes_to_scan_response() -> None:
    data = protocol.advertising_data(protocol.BeaconPayload(1, 0, 0), protocol.DEFAULT_LOCAL_NAME)
    assert len(data) == protocol.LEGACY_ADV_MAX  # flags + UUID + manufacturer data fill it
    assert protocol.DEFAULT_LOCAL_NAME.encode() not in data
    assert protocol.uuid_le_bytes(protocol.SERVICE_UUID) in data
    assert protocol.scan_response_data("SG Beacon")[2:] == b"SG Beacon"


@pytest.mark.parametrize("bad", [b"", b"\x01\x02", bytes.fromhex("02010000000000"),
                                 bytes.fromhex("020100000000")])
def test_malformed_payloads_are_refused(bad: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_payload(bad)


def test_info_characteristic_round_trips() -> None:
    info = protocol.BeaconInfo(beacon_id=513, firmware="1.2.3")
    assert protocol.parse_info(info.pack()) == info
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_info(b"\x01")


def _bleak_advertisement(uuids: list[str], manufacturer: dict[int, bytes]) -> AdvertisementData:
    return AdvertisementData(local_name="SG Beacon", manufacturer_data=manufacturer,
                             service_data={}, service_uuids=uuids, tx_power=None, rssi=-67,
                             platform_data=())


def test_bleak_advertisement_of_our_beacon_is_recognised() -> None:
    device = BLEDevice("f0:00:00:00:00:2a", "SG Beacon", {})
    payload = protocol.BeaconPayload(42, 7, 90).pack()
    data = _bleak_advertisement([protocol.SERVICE_UUID.upper()], {protocol.COMPANY_ID: payload})
    adv = advertisement_from_bleak(device.address, data.rssi, data.service_uuids,
                                   data.manufacturer_data, data.local_name)
    assert adv is not None
    assert (adv.address, adv.rssi, adv.beacon_id, adv.counter, adv.uptime_min, adv.name) == (
        "F0:00:00:00:00:2A", -67, 42, 7, 90, "SG Beacon")


@pytest.mark.parametrize(
    ("uuids", "manufacturer"),
    [
        ([], {protocol.COMPANY_ID: protocol.BeaconPayload(1, 0, 0).pack()}),  # no service UUID
        ([protocol.SERVICE_UUID], {}),  # no manufacturer data
        ([protocol.SERVICE_UUID], {0x004C: protocol.BeaconPayload(1, 0, 0).pack()}),  # Apple's id
        ([protocol.SERVICE_UUID], {protocol.COMPANY_ID: b"\x09" * 6}),  # future protocol version
    ],
)
def test_other_devices_are_not_mistaken_for_beacons(uuids: list[str], manufacturer: dict[int, bytes]
                                                    ) -> None:
    data = _bleak_advertisement(uuids, manufacturer)
    assert advertisement_from_bleak("AA:BB:CC:DD:EE:FF", data.rssi, data.service_uuids,
                                    data.manufacturer_data, data.local_name) is None


def test_serial_verbs_are_single_lower_case_words_as_the_firmware_compares_them() -> None:
    # commands.cpp lower-cases what was typed and compares it with these, word by word.
    for word in (protocol.VERB_HELP, protocol.VERB_VERSION, protocol.VERB_ID, protocol.VERB_STATUS,
                 protocol.VERB_ADV, protocol.ADV_ON, protocol.ADV_OFF):
        assert word.isascii() and word.isalpha() and word == word.lower()
    assert max(map(len, protocol.COMMAND_USAGES)) <= protocol.MAX_COMMAND_LEN
    assert protocol.HELP_TEXT == "commands: help, version, id, id <1-65535>, status, adv on, adv off"


def test_command_builders_spell_the_commands_help_lists() -> None:
    assert protocol.adv_command(on=True) in protocol.COMMAND_USAGES
    assert protocol.adv_command(on=False) == "adv off"
    assert protocol.set_id_command(65535) == "id 65535"
    assert len(protocol.set_id_command(65535)) <= protocol.MAX_COMMAND_LEN
    with pytest.raises(protocol.ProtocolError, match="1-65535"):
        protocol.set_id_command(0)


def test_reply_fields_are_the_key_value_words_after_ok() -> None:
    assert protocol.reply_fields("ok firmware=0.1.0 protocol=1") == {"firmware": "0.1.0", "protocol": "1"}
    assert protocol.reply_fields("ok adv=off") == {"adv": "off"}
    assert protocol.reply_fields(f"ok {protocol.HELP_TEXT}") == {}
