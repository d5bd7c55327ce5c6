// The beacon-sim bridge: the host-built sketch's radio, played by a bumble device in Python
// (appliance/presence/sketch_beacon.py) on the appliance's virtual link.
//
// The sketch runs unchanged on the ArduinoBLE stand-in (host/fake_ble.cpp), which keeps the
// library's bookkeeping and its view of the controller: what is on air, whether a central is
// linked. The bridge mirrors that view to the Python side as it changes, and turns what bumble
// reports (a central connected, wrote, went away) into the stand-in's central events, which the
// sketch then receives from BLE.poll() exactly as in the host tests.
//
// Text lines, one message each; bytes are lower-case hex, "-" when empty. See ../README.md.
//   sim -> host: name <hex> | service <uuid> | char <uuid> <properties, 2 hex digits> | ready |
//                value <uuid> <hex> | adv <data hex> <scan response hex> | adv-off |
//                disconnect | led <0|1>
//   host -> sim: connected | disconnected | write <uuid> <hex>
#pragma once

#include <stdint.h>

#include <map>
#include <string>
#include <vector>

namespace sim {

class Bridge {
public:
    // Messages for the host since the last call, each ending in "\n". The first call describes
    // the device (name, GATT table) and ends that part with "ready"; every call then reports what
    // changed: characteristic values, the LED, a link the sketch dropped, advertising.
    std::string sync();

    // One message from the host, without its newline. Returns false, with the reason in *error,
    // for a message it cannot use; the sketch's state is then unchanged.
    bool handle(const std::string& line, std::string* error);

private:
    bool described_ = false;
    // The host holds a link (it said "connected" and has not said "disconnected" or been told to
    // drop it). When the stand-in has no link while this is true, the sketch (or the stand-in,
    // refusing the connection) ended it: the host is told to disconnect.
    bool hostLinked_ = false;
    bool advertising_ = false;
    std::vector<uint8_t> advertisingData_;
    std::vector<uint8_t> scanResponse_;
    std::map<std::string, std::vector<uint8_t> > values_;
    int led_ = -1;  // the level last reported; -1 before the first sync
};

// Lower-case hex, "-" for no bytes; and back (false for odd lengths or non-hex digits).
std::string toHex(const std::vector<uint8_t>& bytes);
bool fromHex(const std::string& text, std::vector<uint8_t>* bytes);

}  // namespace sim
