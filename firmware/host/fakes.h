// Test-side controls of the host stand-ins (Arduino.h, ArduinoBLE.h). Only tests include this.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "Arduino.h"

namespace fake_arduino {

void setMillis(uint32_t ms);
void advanceMillis(uint32_t ms);

unsigned long serialBaud();  // 0 until Serial.begin()
void serialInput(const std::string& text);
// Everything printed since the last call, then forgets it.
std::string takeSerialOutput();

PinMode pinModeOf(pin_size_t pin);
PinStatus pinLevel(pin_size_t pin);
// Number of times the pin's level changed (writes of the same level do not count).
unsigned pinChanges(pin_size_t pin);

}  // namespace fake_arduino

namespace fake_ble {

// ArduinoBLE calls whose result can be forced to fail, as a broken radio would.
enum class Fail { Begin, SetLocalName, SetRawData, Advertise, WriteValue };
void failNext(Fail call, int times = 1);

// The controller's view: what goes on air right now.
bool advertising();
std::vector<uint8_t> advertisingData();
std::vector<uint8_t> scanResponseData();
const char* deviceName();
int advertiseCalls();  // successful BLE.advertise() calls

// The GATT table as the library built it (BLE.addService), with every characteristic's current
// value: what a central could discover. The beacon-sim bridge (sim/bridge.cpp) mirrors it to bumble.
struct GattEntry {
    const char* serviceUuid;
    const char* uuid;
    uint8_t properties;  // BLERead, BLEWrite, ...: the GATT characteristic property bits
    std::vector<uint8_t> value;
};
std::vector<GattEntry> gattTable();

// A central. Events are delivered the way ArduinoBLE delivers them: inside BLE.poll() (and the
// other calls that poll HCI), never directly from these functions.
// connect() fails when the beacon is not advertising (or a central is already linked).
bool connect();
// The central drops the link (or it is lost).
bool disconnect();
bool linked();  // the controller has a link (events may still be pending)
// The GATT table holds a service with this UUID and this characteristic in it.
bool serves(const char* serviceUuid, const char* characteristicUuid);
// ATT read of a characteristic of the beacon service: the value, or empty when not connected,
// unknown or not readable.
std::vector<uint8_t> read(const char* uuid);
// ATT write request; false when not connected, unknown or not writable.
bool write(const char* uuid, const std::vector<uint8_t>& value);

// ArduinoBLE 2.x re-enables advertising by itself when a link ends (unless stopAdvertise() was
// called). Older releases and some controller set-ups did not (ArduinoBLE issues #79, #74);
// passing false models those, to show the sketch resumes advertising on its own.
void setAutoResume(bool enabled);

// BLE calls that issue HCI commands made from inside an event handler. ArduinoBLE runs them by
// polling HCI re-entrantly, a classic cause of freezes; the sketch must keep this at 0.
int reentrantCalls();
int pollCalls();

}  // namespace fake_ble
