// The bytes the beacon puts on air, laid out exactly as appliance/presence/protocol.py describes.
// Plain C++ (no Arduino or ArduinoBLE), so the host tests and the target build use it as is.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

namespace fw {

// AD structure types (Bluetooth Core Supplement, part A, 1.1-1.4).
static const uint8_t AD_TYPE_FLAGS = 0x01;
static const uint8_t AD_TYPE_COMPLETE_128BIT_UUIDS = 0x07;
static const uint8_t AD_TYPE_COMPLETE_LOCAL_NAME = 0x09;
static const uint8_t AD_TYPE_MANUFACTURER_DATA = 0xFF;
// LE General Discoverable, BR/EDR not supported.
static const uint8_t AD_FLAGS = 0x06;

// Manufacturer payload (the 6 bytes after the company id), little-endian:
// protocol version, beacon id, counter, uptime in minutes.
void packPayload(uint8_t out[protocol::PAYLOAD_LEN], uint16_t beaconId, uint8_t counter,
                 uint16_t uptimeMin);

// Value of the INFO characteristic (protocol.py BeaconInfo.pack): protocol version, firmware
// major/minor/patch, beacon id, reserved (0).
void packInfo(uint8_t out[protocol::INFO_LEN], uint16_t beaconId);

// Complete legacy advertising data: flags, the 128-bit service UUID, manufacturer data (company id
// and payload) and, only when it still fits in 31 bytes, the complete local name. Returns the
// number of bytes written (never more than LEGACY_ADV_MAX). With the protocol's layout the first
// three fields take all 31 bytes, so the name is left out and travels in the scan response.
size_t buildAdvertisingData(uint8_t out[protocol::LEGACY_ADV_MAX],
                            const uint8_t payload[protocol::PAYLOAD_LEN], const char* localName);

}  // namespace fw
