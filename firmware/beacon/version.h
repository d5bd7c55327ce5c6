// Firmware version. The numbers go into the INFO characteristic (protocol.py BeaconInfo) and the
// string is built from them, so the two can never disagree. Bump before flashing a release.
#pragma once
#include <stdint.h>

#define FW_VERSION_MAJOR 0
#define FW_VERSION_MINOR 1
#define FW_VERSION_PATCH 0

#define FW_STRINGIFY_(x) #x
#define FW_STRINGIFY(x) FW_STRINGIFY_(x)
#define FIRMWARE_VERSION                                                 \
    FW_STRINGIFY(FW_VERSION_MAJOR) "." FW_STRINGIFY(FW_VERSION_MINOR) "." \
        FW_STRINGIFY(FW_VERSION_PATCH)
