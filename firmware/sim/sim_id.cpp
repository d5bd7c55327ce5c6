#include "sim_id.h"

#include <stdlib.h>

namespace sim {

const char* const BEACON_ID_VARIABLE = "BEACON_SIM_ID";

bool parseBeaconId(const char* text, uint16_t* id) {
    if (text == nullptr || *text == '\0') {
        return false;
    }
    unsigned long value = 0;
    for (const char* p = text; *p != '\0'; ++p) {
        if (*p < '0' || *p > '9' || value > 65535) {
            return false;
        }
        value = value * 10 + static_cast<unsigned long>(*p - '0');
    }
    if (value > 65535) {
        return false;
    }
    *id = static_cast<uint16_t>(value);
    return true;
}

uint16_t beaconIdFromEnvironment() {
    uint16_t id = 0;
    return parseBeaconId(getenv(BEACON_ID_VARIABLE), &id) ? id : 0;
}

}  // namespace sim
