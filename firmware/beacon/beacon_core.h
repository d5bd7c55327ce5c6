// The beacon's state and decisions: what to advertise and when, the serial commands, identify.
// Plain C++ without Arduino headers: everything board-specific goes through BeaconHal, which
// beacon.ino implements with ArduinoBLE. No heap, no exceptions, no RTTI.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "commands.h"
#include "protocol.h"

namespace fw {

// What the beacon needs from the board (beacon.ino: ArduinoBLE and the Arduino core).
class BeaconHal {
public:
    // (Re)starts connectable advertising with this advertising data. ArduinoBLE keeps the pointer
    // and reads the bytes whenever it (re)builds the packet, so they live in the Beacon, never on
    // the stack.
    virtual bool startAdvertising(const uint8_t* data, size_t length) = 0;
    virtual void stopAdvertising() = 0;
    // Drops the connected central, if any; true when one was connected.
    virtual bool disconnectCentral() = 0;
    // Sets the value the INFO characteristic returns to reads.
    virtual bool setInfo(const uint8_t* value, size_t length) = 0;
    virtual void setLed(bool on) = 0;
    // Prints one line (the board adds CR LF).
    virtual void printLine(const char* line) = 0;

protected:
    ~BeaconHal() {}
};

class Beacon {
public:
    // New advertising data (counter + 1, current uptime) this often while advertising.
    static const uint32_t ADV_REFRESH_MS = 60000;
    // Retry this soon when (re)starting advertising failed.
    static const uint32_t ADV_RETRY_MS = 1000;
    // Identify blinks LED_BUILTIN at 2 Hz.
    static const uint32_t BLINK_HALF_PERIOD_MS = 250;

    // beaconId 0 means "not provisioned" (protocol.py); `id <n>` sets it until the next reset.
    Beacon(BeaconHal& hal, uint16_t beaconId);

    // Once from setup(), after the radio was (or failed to be) initialised. Publishes INFO and
    // starts advertising; prints "BLE beacon active" when advertising is on.
    void begin(uint32_t nowMs, bool bleReady);

    // Called from ArduinoBLE event handlers. They only record what happened: handlers run inside
    // BLE.poll(), and issuing HCI commands from there (advertise(), disconnect()) re-enters the
    // HCI poll loop, a known source of lock-ups. tick() does the work on the next loop().
    void centralConnected();
    void centralDisconnected();
    void identifyWritten(uint8_t seconds);

    // One byte from the serial port; a completed line is executed and answered at once.
    void serialByte(char c, uint32_t nowMs);

    // Every loop(): resumes and refreshes advertising, keeps uptime, drives the identify blink.
    // Never blocks.
    void tick(uint32_t nowMs);

private:
    uint8_t identifySecondsLeft(uint32_t nowMs) const;
    void execute(const Command& command, uint32_t nowMs);
    bool refreshAdvertising(uint32_t nowMs);
    bool publishInfo();
    void updateUptime(uint32_t nowMs);
    void updateIdentify(uint32_t nowMs);
    void setLed(bool on);

    BeaconHal& hal_;
    LineReader reader_;
    uint16_t id_;
    bool bleReady_;

    // Advertising.
    bool advWanted_;          // on, unless `adv off`
    bool advAnnounced_;       // "BLE beacon active" printed since advertising was off or failing
    bool connected_;          // a central is connected (the controller does not advertise then)
    bool reportedConnected_;  // connected_ as last printed ("central connected" / "disconnected")
    bool resumePending_;      // a central disconnected: advertise again on the next tick
    bool everAdvertised_;     // the first advertising data carries counter 0
    uint8_t counter_;
    uint32_t lastAttemptMs_;
    uint32_t retryAfterMs_;  // ADV_REFRESH_MS after success, ADV_RETRY_MS after a failure
    uint8_t advData_[protocol::LEGACY_ADV_MAX];
    size_t advLength_;
    uint32_t connections_;

    // Uptime, in whole minutes, counted from begin(); wrap-safe across millis() overflow.
    uint32_t minuteStartMs_;
    uint16_t uptimeMin_;

    // Identify.
    int16_t identifyRequest_;  // seconds written by a central, -1 when none is pending
    bool identifying_;
    uint32_t identifyStartMs_;
    uint32_t identifyDurationMs_;
    bool ledOn_;
};

}  // namespace fw
