#include "advertising.h"

#include <string.h>

#include "version.h"

namespace fw {

// Flags, UUID list and manufacturer data must always fit; only the name is optional.
static_assert(3 + 2 + sizeof(protocol::SERVICE_UUID_LE) + 2 + 2 + protocol::PAYLOAD_LEN <=
                  protocol::LEGACY_ADV_MAX,
              "the protocol's mandatory fields do not fit in legacy advertising data");

namespace {

void putU16(uint8_t* out, uint16_t value) {
    out[0] = static_cast<uint8_t>(value & 0xFF);
    out[1] = static_cast<uint8_t>(value >> 8);
}

// One AD structure: length (type + data), type, data. The caller has checked that it fits.
size_t putField(uint8_t* out, uint8_t type, const uint8_t* data, size_t length) {
    out[0] = static_cast<uint8_t>(length + 1);
    out[1] = type;
    memcpy(out + 2, data, length);
    return length + 2;
}

}  // namespace

void packPayload(uint8_t out[protocol::PAYLOAD_LEN], uint16_t beaconId, uint8_t counter,
                 uint16_t uptimeMin) {
    out[0] = protocol::PROTOCOL_VERSION;
    putU16(out + 1, beaconId);
    out[3] = counter;
    putU16(out + 4, uptimeMin);
}

void packInfo(uint8_t out[protocol::INFO_LEN], uint16_t beaconId) {
    out[0] = protocol::PROTOCOL_VERSION;
    out[1] = FW_VERSION_MAJOR;
    out[2] = FW_VERSION_MINOR;
    out[3] = FW_VERSION_PATCH;
    putU16(out + 4, beaconId);
    putU16(out + 6, 0);  // reserved
}

size_t buildAdvertisingData(uint8_t out[protocol::LEGACY_ADV_MAX],
                            const uint8_t payload[protocol::PAYLOAD_LEN], const char* localName) {
    size_t used = 0;
    const uint8_t flags = AD_FLAGS;
    used += putField(out + used, AD_TYPE_FLAGS, &flags, 1);
    used += putField(out + used, AD_TYPE_COMPLETE_128BIT_UUIDS, protocol::SERVICE_UUID_LE,
                     sizeof(protocol::SERVICE_UUID_LE));

    uint8_t manufacturer[2 + protocol::PAYLOAD_LEN];
    putU16(manufacturer, protocol::COMPANY_ID);
    memcpy(manufacturer + 2, payload, protocol::PAYLOAD_LEN);
    used += putField(out + used, AD_TYPE_MANUFACTURER_DATA, manufacturer, sizeof(manufacturer));

    if (localName != NULL) {
        const size_t nameLength = strlen(localName);
        if (nameLength > 0 && used + 2 + nameLength <= protocol::LEGACY_ADV_MAX) {
            used += putField(out + used, AD_TYPE_COMPLETE_LOCAL_NAME,
                             reinterpret_cast<const uint8_t*>(localName), nameLength);
        }
    }
    return used;
}

}  // namespace fw
