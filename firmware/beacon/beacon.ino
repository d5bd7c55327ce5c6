// Presence beacon for the Arduino Nano 33 BLE (fqbn arduino:mbed_nano:nano33ble, ArduinoBLE 2.x).
//
// Thin glue: ArduinoBLE and the Arduino core on one side, fw::Beacon (beacon_core.cpp: state,
// serial commands, advertising data) on the other. The protocol is appliance/presence/protocol.py;
// protocol.h is generated from it. See ../README.md.
//
// Everything except setup() and loop() sits in a namespace so that arduino-cli's generated
// prototypes have nothing to get wrong, and the file is also valid C++ for the host tests.
#include <Arduino.h>
#include <ArduinoBLE.h>

#include "beacon_core.h"
#include "protocol.h"

// The beacon id a freshly flashed board starts with. 0 means "not provisioned" (protocol.py).
// Set it per board at build time (make firmware BEACON_ID=7) or, until the next reset, with the
// serial command `id 7`.
#ifndef BEACON_ID
#define BEACON_ID 0
#endif

namespace glue {

BLEService beaconService(protocol::SERVICE_UUID);
BLECharacteristic infoCharacteristic(protocol::INFO_CHAR_UUID, BLERead, protocol::INFO_LEN, true);
// Not fixed length: an empty write then has length 0 and is ignored instead of repeating the last.
BLECharacteristic identifyCharacteristic(protocol::IDENTIFY_CHAR_UUID, BLEWrite, 1);

// ArduinoBLE keeps pointers to what it is given and builds the packets in advertise(), so this
// object (and the bytes it points to) must outlive every advertise() call: hence a global.
BLEAdvertisingData advertisingData;

void reportFailure(const char* call) {
    Serial.print("BLE failed: ");
    Serial.println(call);
}

class ArduinoBeaconHal final : public fw::BeaconHal {
public:
    bool startAdvertising(const uint8_t* data, size_t length) override {
        // Raw data rather than setAdvertisedService()/setManufacturerData(): ArduinoBLE would list
        // the 128-bit UUID as "incomplete" (AD type 0x06), protocol.py says complete (0x07).
        // Raw data replaces ArduinoBLE's whole advertising packet, flags included, so the bytes
        // from fw::buildAdvertisingData() go on air exactly. The name is in the scan response.
        if (!advertisingData.setRawData(data, static_cast<int>(length))) {
            reportFailure("setRawData");
            return false;
        }
        BLE.setAdvertisingData(advertisingData);
        if (!BLE.advertise()) {
            reportFailure("advertise");
            return false;
        }
        return true;
    }

    void stopAdvertising() override { BLE.stopAdvertise(); }

    bool disconnectCentral() override { return BLE.disconnect(); }

    bool setInfo(const uint8_t* value, size_t length) override {
        if (infoCharacteristic.writeValue(value, static_cast<int>(length)) !=
            static_cast<int>(length)) {
            reportFailure("info writeValue");
            return false;
        }
        return true;
    }

    void setLed(bool on) override { digitalWrite(LED_BUILTIN, on ? HIGH : LOW); }

    void printLine(const char* line) override { Serial.println(line); }
};

ArduinoBeaconHal hal;
fw::Beacon beacon(hal, BEACON_ID);
bool bleReady = false;

// Event handlers run inside BLE.poll(): they only hand the event to the beacon, which acts on it
// in loop(). No Serial output, no BLE calls, nothing that can block here.
void onConnected(BLEDevice) { beacon.centralConnected(); }

void onDisconnected(BLEDevice) { beacon.centralDisconnected(); }

void onIdentifyWritten(BLEDevice, BLECharacteristic characteristic) {
    if (characteristic.valueLength() >= 1) {
        beacon.identifyWritten(characteristic.value()[0]);
    }
}

bool startBle() {
    if (!BLE.begin()) {
        reportFailure("begin");
        return false;
    }
    // The protocol's advertising data is full (31 bytes), so ArduinoBLE's place for the name,
    // the scan response, is the right one. The device name is the GAP Device Name characteristic.
    if (!BLE.setLocalName(protocol::DEFAULT_LOCAL_NAME)) {
        reportFailure("setLocalName");
    }
    BLE.setDeviceName(protocol::DEFAULT_LOCAL_NAME);
    beaconService.addCharacteristic(infoCharacteristic);
    beaconService.addCharacteristic(identifyCharacteristic);
    BLE.addService(beaconService);
    identifyCharacteristic.setEventHandler(BLEWritten, onIdentifyWritten);
    BLE.setEventHandler(BLEConnected, onConnected);
    BLE.setEventHandler(BLEDisconnected, onDisconnected);
    return true;
}

}  // namespace glue

void setup() {
    // No `while (!Serial)`: the beacon runs on a battery with no USB host most of the time.
    Serial.begin(protocol::SERIAL_BAUD);
    pinMode(LED_BUILTIN, OUTPUT);
    digitalWrite(LED_BUILTIN, LOW);
    glue::bleReady = glue::startBle();
    glue::beacon.begin(static_cast<uint32_t>(millis()), glue::bleReady);
}

void loop() {
    // Poll every pass: it delivers connect/disconnect/write events and keeps the HCI link
    // serviced. Nothing in loop() blocks, so this runs thousands of times a second.
    if (glue::bleReady) {
        BLE.poll();
    }
    const uint32_t now = static_cast<uint32_t>(millis());  // 32 bits on the board too
    while (Serial.available() > 0) {
        glue::beacon.serialByte(static_cast<char>(Serial.read()), now);
    }
    glue::beacon.tick(now);
}
