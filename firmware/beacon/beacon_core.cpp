#include "beacon_core.h"

#include <string.h>

#include "advertising.h"
#include "version.h"

namespace fw {

namespace {

// One reply or log line, built in place. No printf: smaller on the board and the format is obvious.
class TextLine {
public:
    TextLine() : length_(0) { buffer_[0] = '\0'; }

    TextLine& add(const char* text) {
        while (*text != '\0' && length_ < CAPACITY) {
            buffer_[length_++] = *text++;
        }
        buffer_[length_] = '\0';
        return *this;
    }

    TextLine& add(uint32_t value) {
        char digits[10];
        size_t count = 0;
        do {
            digits[count++] = static_cast<char>('0' + value % 10);
            value /= 10;
        } while (value != 0);
        char text[11];
        for (size_t i = 0; i < count; ++i) {
            text[i] = digits[count - 1 - i];
        }
        text[count] = '\0';
        return add(text);
    }

    const char* text() const { return buffer_; }

private:
    static const size_t CAPACITY = 127;
    char buffer_[CAPACITY + 1];
    size_t length_;
};

const char* yesNo(bool value) { return value ? "yes" : "no"; }
const char* onOff(bool value) { return value ? "on" : "off"; }

const uint32_t MS_PER_MINUTE = 60000;

}  // namespace

Beacon::Beacon(BeaconHal& hal, uint16_t beaconId)
    : hal_(hal),
      id_(beaconId),
      bleReady_(false),
      advWanted_(false),
      advAnnounced_(false),
      connected_(false),
      reportedConnected_(false),
      resumePending_(false),
      everAdvertised_(false),
      counter_(0),
      lastAttemptMs_(0),
      retryAfterMs_(ADV_REFRESH_MS),
      advLength_(0),
      connections_(0),
      minuteStartMs_(0),
      uptimeMin_(0),
      identifyRequest_(-1),
      identifying_(false),
      identifyStartMs_(0),
      identifyDurationMs_(0),
      ledOn_(false) {
    memset(advData_, 0, sizeof(advData_));
}

void Beacon::begin(uint32_t nowMs, bool bleReady) {
    bleReady_ = bleReady;
    minuteStartMs_ = nowMs;
    lastAttemptMs_ = nowMs;
    setLed(false);
    if (!bleReady_) {
        return;  // beacon.ino printed what failed; the serial commands keep working
    }
    publishInfo();  // a failure is reported by beacon.ino; INFO is only read after a connect
    advWanted_ = true;
    refreshAdvertising(nowMs);
}

void Beacon::centralConnected() {
    connected_ = true;
    resumePending_ = false;
    ++connections_;
}

void Beacon::centralDisconnected() {
    connected_ = false;
    // ArduinoBLE 2.x re-enables advertising by itself after a disconnect; older releases and some
    // controllers did not (ArduinoBLE issues #74, #79). Advertise again explicitly, with fresh
    // data.
    resumePending_ = true;
}

void Beacon::identifyWritten(uint8_t seconds) {
    identifyRequest_ =
        seconds > protocol::IDENTIFY_MAX_SECONDS ? protocol::IDENTIFY_MAX_SECONDS : seconds;
}

void Beacon::serialByte(char c, uint32_t nowMs) {
    if (!reader_.feed(c)) {
        return;
    }
    if (reader_.overflowed()) {
        hal_.printLine(TextLine().add(protocol::REPLY_ERR).add("line too long").text());
        return;
    }
    execute(parseCommand(reader_.line()), nowMs);
}

void Beacon::tick(uint32_t nowMs) {
    updateUptime(nowMs);
    if (connected_ != reportedConnected_) {
        reportedConnected_ = connected_;
        hal_.printLine(connected_ ? "central connected" : "central disconnected");
    }
    // The controller stops advertising while a central is connected; advertising then would let a
    // second central in, so refreshes wait for the disconnect.
    if (bleReady_ && advWanted_ && !connected_ &&
        (resumePending_ || nowMs - lastAttemptMs_ >= retryAfterMs_)) {
        refreshAdvertising(nowMs);
    }
    updateIdentify(nowMs);
}

uint8_t Beacon::identifySecondsLeft(uint32_t nowMs) const {
    if (!identifying_) {
        return 0;
    }
    const uint32_t elapsed = nowMs - identifyStartMs_;
    if (elapsed >= identifyDurationMs_) {
        return 0;
    }
    return static_cast<uint8_t>((identifyDurationMs_ - elapsed + 999) / 1000);
}

void Beacon::execute(const Command& command, uint32_t nowMs) {
    TextLine reply;
    switch (command.kind) {
        case CommandKind::Empty:
            return;
        case CommandKind::Invalid:
            reply.add(protocol::REPLY_ERR).add(command.error);
            break;
        case CommandKind::Help:
            reply.add(protocol::REPLY_OK).add(protocol::HELP_TEXT);
            break;
        case CommandKind::Version:
            reply.add(protocol::REPLY_OK).add("firmware=" FIRMWARE_VERSION " protocol=");
            reply.add(protocol::PROTOCOL_VERSION);
            break;
        case CommandKind::GetId:
            reply.add(protocol::REPLY_OK).add("id=").add(id_);
            break;
        case CommandKind::SetId:
            // Kept in RAM until the next reset (see README: -DBEACON_ID=n makes it permanent).
            // INFO and the advertising data both carry the id, so both change now.
            id_ = command.id;
            if (bleReady_ && !publishInfo()) {
                reply.add(protocol::REPLY_ERR).add("id=").add(id_);
                reply.add(" set but the info characteristic kept the old one");
                break;
            }
            if (bleReady_ && advWanted_ && !connected_ && !refreshAdvertising(nowMs)) {
                reply.add(protocol::REPLY_ERR).add("id=").add(id_);
                reply.add(" set but advertising failed; retrying");
                break;
            }
            reply.add(protocol::REPLY_OK).add("id=").add(id_);
            break;
        case CommandKind::Status:
            updateUptime(nowMs);
            reply.add(protocol::REPLY_OK).add("id=").add(id_);
            reply.add(" adv=").add(onOff(advWanted_));
            reply.add(" connected=").add(yesNo(connected_));
            reply.add(" connections=").add(connections_);
            reply.add(" counter=").add(counter_);
            reply.add(" uptime_min=").add(uptimeMin_);
            reply.add(" identify=").add(identifySecondsLeft(nowMs));
            reply.add(" ble=").add(bleReady_ ? "ok" : "failed");
            break;
        case CommandKind::AdvOn:
            if (!bleReady_) {
                reply.add(protocol::REPLY_ERR).add("bluetooth did not start; reset the board");
                break;
            }
            advWanted_ = true;
            // Already on (or connected, which ends in advertising again): nothing to do.
            if (!connected_ && !advAnnounced_ && !refreshAdvertising(nowMs)) {
                reply.add(protocol::REPLY_ERR).add("advertising failed; retrying");
                break;
            }
            reply.add(protocol::REPLY_OK).add("adv=on");
            break;
        case CommandKind::AdvOff:
            advWanted_ = false;
            advAnnounced_ = false;
            resumePending_ = false;
            if (bleReady_) {
                // Stop first, then drop the link: ArduinoBLE re-enables advertising when a link
                // ends while it still counts itself as advertising.
                hal_.stopAdvertising();
                hal_.disconnectCentral();
                // ArduinoBLE raises no BLEDisconnected event for a disconnect we asked for.
                connected_ = false;
            }
            reply.add(protocol::REPLY_OK).add("adv=off");
            break;
    }
    hal_.printLine(reply.text());
}

bool Beacon::refreshAdvertising(uint32_t nowMs) {
    updateUptime(nowMs);
    // The counter goes up by one each time new data goes on air (u8, wraps at 255); the very
    // first advertisement carries 0. A failed attempt does not count.
    const uint8_t counter = everAdvertised_ ? static_cast<uint8_t>(counter_ + 1) : counter_;
    uint8_t payload[protocol::PAYLOAD_LEN];
    packPayload(payload, id_, counter, uptimeMin_);
    advLength_ = buildAdvertisingData(advData_, payload, protocol::DEFAULT_LOCAL_NAME);

    lastAttemptMs_ = nowMs;
    resumePending_ = false;
    if (!hal_.startAdvertising(advData_, advLength_)) {
        retryAfterMs_ = ADV_RETRY_MS;
        advAnnounced_ = false;
        return false;
    }
    counter_ = counter;
    everAdvertised_ = true;
    retryAfterMs_ = ADV_REFRESH_MS;
    if (!advAnnounced_) {
        advAnnounced_ = true;
        hal_.printLine("BLE beacon active");
    }
    return true;
}

bool Beacon::publishInfo() {
    uint8_t info[protocol::INFO_LEN];
    packInfo(info, id_);
    return hal_.setInfo(info, sizeof(info));  // copied by ArduinoBLE: a stack buffer is fine
}

void Beacon::updateUptime(uint32_t nowMs) {
    // Unsigned differences stay right when millis() wraps after 49.7 days; the minutes saturate
    // at 65535 (45.5 days) as the protocol says.
    while (nowMs - minuteStartMs_ >= MS_PER_MINUTE) {
        minuteStartMs_ += MS_PER_MINUTE;
        if (uptimeMin_ < 0xFFFF) {
            ++uptimeMin_;
        }
    }
}

void Beacon::updateIdentify(uint32_t nowMs) {
    if (identifyRequest_ >= 0) {
        // A new write restarts the blink; 0 stops it.
        identifying_ = identifyRequest_ > 0;
        identifyStartMs_ = nowMs;
        identifyDurationMs_ = static_cast<uint32_t>(identifyRequest_) * 1000u;
        identifyRequest_ = -1;
    }
    bool on = false;
    if (identifying_) {
        const uint32_t elapsed = nowMs - identifyStartMs_;
        if (elapsed >= identifyDurationMs_) {
            identifying_ = false;
        } else {
            on = (elapsed / BLINK_HALF_PERIOD_MS) % 2 == 0;
        }
    }
    setLed(on);
}

void Beacon::setLed(bool on) {
    if (on != ledOn_) {
        ledOn_ = on;
        hal_.setLed(on);
    }
}

}  // namespace fw
