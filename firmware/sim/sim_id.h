// The simulated board's "build-time" beacon id. The sim build compiles beacon.ino unchanged with
// -include sim/sim_id.h -DBEACON_ID=sim::beaconIdFromEnvironment(), so each beacon-sim process
// starts with the id in $BEACON_SIM_ID, as a board flashed with `make firmware BEACON_ID=n` would.
#pragma once

#include <stdint.h>

namespace sim {

// The variable that carries the id; unset means 0, "not provisioned", like the default build.
extern const char* const BEACON_ID_VARIABLE;

// $BEACON_SIM_ID as an id; 0 when unset or invalid (main() refuses invalid values with a message).
// Safe during static initialisation: the sketch's globals are built before main() runs.
uint16_t beaconIdFromEnvironment();

// Parses 0..65535 in decimal; false for anything else.
bool parseBeaconId(const char* text, uint16_t* id);

}  // namespace sim
