// Drives the sketch (beacon.ino's setup() and loop()) the way the board would, and builds the
// bytes the tests expect straight from protocol.h, independently of the code under test.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "fakes.h"

void setup();  // beacon.ino
void loop();

namespace driver {

// setup() and one loop(); returns what was printed.
std::string boot();
void loopOnce();
// Advances the clock in steps, running loop() after each, for `ms` milliseconds.
void runFor(uint32_t ms, uint32_t stepMs = 10);
// Sends one line (LF-terminated), runs loop() once and returns the single reply line
// ("ok ..." or "err ..."). Fails the test unless exactly one reply came back. Log lines printed
// meanwhile are kept in `lastLog`.
std::string command(const std::string& line);
extern std::string lastLog;

// Lines of serial output, CR LF stripped.
std::vector<std::string> lines(const std::string& output);
bool contains(const std::string& output, const std::string& line);

std::vector<uint8_t> hex(const std::string& text);
// protocol.py: uuid_le_bytes(SERVICE_UUID), from the UUID string.
std::vector<uint8_t> serviceUuidLe();
// protocol.py: BeaconPayload(...).pack()
std::vector<uint8_t> payload(uint16_t beaconId, uint8_t counter, uint16_t uptimeMin);
// protocol.py: advertising_data(BeaconPayload(...), DEFAULT_LOCAL_NAME)
std::vector<uint8_t> advertising(uint16_t beaconId, uint8_t counter, uint16_t uptimeMin);
// protocol.py: scan_response_data(DEFAULT_LOCAL_NAME)
std::vector<uint8_t> scanResponse();
// protocol.py: BeaconInfo(beacon_id, FIRMWARE_VERSION).pack()
std::vector<uint8_t> info(uint16_t beaconId);

}  // namespace driver
