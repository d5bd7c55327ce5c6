#include "bridge.h"

#include <string.h>

#include "Arduino.h"
#include "fakes.h"

namespace sim {

namespace {

// Splits "verb arg arg" at single spaces; the host never sends anything else.
std::vector<std::string> words(const std::string& line) {
    std::vector<std::string> result;
    size_t start = 0;
    while (start <= line.size()) {
        const size_t end = line.find(' ', start);
        result.push_back(line.substr(start, end == std::string::npos ? std::string::npos
                                                                    : end - start));
        if (end == std::string::npos) {
            break;
        }
        start = end + 1;
    }
    return result;
}

int hexDigit(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

std::string byteHex(uint8_t value) {
    static const char digits[] = "0123456789abcdef";
    return std::string(1, digits[value >> 4]) + digits[value & 0xF];
}

}  // namespace

std::string toHex(const std::vector<uint8_t>& bytes) {
    if (bytes.empty()) {
        return "-";
    }
    std::string text;
    for (uint8_t byte : bytes) {
        text += byteHex(byte);
    }
    return text;
}

bool fromHex(const std::string& text, std::vector<uint8_t>* bytes) {
    bytes->clear();
    if (text == "-") {
        return true;
    }
    if (text.empty() || text.size() % 2 != 0) {
        return false;
    }
    for (size_t i = 0; i < text.size(); i += 2) {
        const int high = hexDigit(text[i]);
        const int low = hexDigit(text[i + 1]);
        if (high < 0 || low < 0) {
            return false;
        }
        bytes->push_back(static_cast<uint8_t>(high * 16 + low));
    }
    return true;
}

std::string Bridge::sync() {
    std::string out;
    const std::vector<fake_ble::GattEntry> table = fake_ble::gattTable();
    if (!described_) {
        described_ = true;
        const char* name = fake_ble::deviceName();
        out += "name " + toHex(std::vector<uint8_t>(name, name + strlen(name))) + "\n";
        const char* service = nullptr;
        for (const fake_ble::GattEntry& entry : table) {
            if (service == nullptr || strcmp(service, entry.serviceUuid) != 0) {
                service = entry.serviceUuid;
                out += std::string("service ") + service + "\n";
            }
            out += std::string("char ") + entry.uuid + " " + byteHex(entry.properties) + "\n";
        }
        out += "ready\n";
    }
    // Values first: after `id <n>` the new INFO is served before the new id goes on air.
    for (const fake_ble::GattEntry& entry : table) {
        std::map<std::string, std::vector<uint8_t> >::iterator known = values_.find(entry.uuid);
        if (known == values_.end() || known->second != entry.value) {
            values_[entry.uuid] = entry.value;
            out += std::string("value ") + entry.uuid + " " + toHex(entry.value) + "\n";
        }
    }
    const int led = fake_arduino::pinLevel(LED_BUILTIN) == HIGH ? 1 : 0;
    if (led != led_) {
        led_ = led;
        out += led == 1 ? "led 1\n" : "led 0\n";
    }
    // A link the host holds but the stand-in does not: BLE.disconnect() from the sketch, or a
    // connection the stand-in refused because the beacon had stopped advertising meanwhile.
    if (hostLinked_ && !fake_ble::linked()) {
        hostLinked_ = false;
        out += "disconnect\n";
    }
    const bool advertising = fake_ble::advertising();
    const std::vector<uint8_t> data = fake_ble::advertisingData();
    const std::vector<uint8_t> scanResponse = fake_ble::scanResponseData();
    if (advertising != advertising_ ||
        (advertising && (data != advertisingData_ || scanResponse != scanResponse_))) {
        advertising_ = advertising;
        advertisingData_ = data;
        scanResponse_ = scanResponse;
        out += advertising ? "adv " + toHex(data) + " " + toHex(scanResponse) + "\n"
                           : std::string("adv-off\n");
    }
    return out;
}

bool Bridge::handle(const std::string& line, std::string* error) {
    const std::vector<std::string> parts = words(line);
    const std::string& verb = parts[0];
    if (verb == "connected" && parts.size() == 1) {
        // Refused (not advertising, or already linked): sync() then asks the host to drop it.
        hostLinked_ = true;
        fake_ble::connect();
        return true;
    }
    if (verb == "disconnected" && parts.size() == 1) {
        hostLinked_ = false;
        fake_ble::disconnect();  // false when the sketch had already dropped the link: fine
        return true;
    }
    if (verb == "write" && parts.size() == 3) {
        std::vector<uint8_t> value;
        if (!fromHex(parts[2], &value)) {
            *error = "bad hex in: " + line;
            return false;
        }
        if (!fake_ble::write(parts[1].c_str(), value)) {
            *error = "write refused (no link, unknown or not writable characteristic): " + line;
            return false;
        }
        return true;
    }
    *error = "unknown message: " + line;
    return false;
}

}  // namespace sim
