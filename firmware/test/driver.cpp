#include "driver.h"

#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "protocol.h"
#include "version.h"

namespace driver {

std::string lastLog;

std::string boot() {
    setup();
    loop();
    return fake_arduino::takeSerialOutput();
}

void loopOnce() { loop(); }

void runFor(uint32_t ms, uint32_t stepMs) {
    for (uint32_t elapsed = 0; elapsed < ms; elapsed += stepMs) {
        fake_arduino::advanceMillis(stepMs);
        loop();
    }
}

std::string command(const std::string& line) {
    fake_arduino::serialInput(line + "\n");
    loop();
    std::string reply;
    int replies = 0;
    lastLog.clear();
    for (const std::string& printed : lines(fake_arduino::takeSerialOutput())) {
        if (printed.compare(0, strlen(protocol::REPLY_OK), protocol::REPLY_OK) == 0 ||
            printed.compare(0, strlen(protocol::REPLY_ERR), protocol::REPLY_ERR) == 0) {
            reply = printed;
            ++replies;
        } else {
            lastLog += printed + "\n";
        }
    }
    if (replies != 1) {
        harness::fail(__FILE__, __LINE__,
                      "'" + line + "' got " + std::to_string(replies) + " replies, expected 1");
    }
    return reply;
}

std::vector<std::string> lines(const std::string& output) {
    std::vector<std::string> result;
    size_t start = 0;
    while (start < output.size()) {
        size_t end = output.find("\r\n", start);
        if (end == std::string::npos) {
            harness::fail(__FILE__, __LINE__, "serial output not ended by CR LF: " + output);
        }
        result.push_back(output.substr(start, end - start));
        start = end + 2;
    }
    return result;
}

bool contains(const std::string& output, const std::string& line) {
    for (const std::string& printed : lines(output)) {
        if (printed == line) {
            return true;
        }
    }
    return false;
}

std::vector<uint8_t> hex(const std::string& text) {
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i + 1 < text.size(); i += 2) {
        bytes.push_back(static_cast<uint8_t>(strtoul(text.substr(i, 2).c_str(), nullptr, 16)));
    }
    return bytes;
}

std::vector<uint8_t> serviceUuidLe() {
    std::string digits;
    for (const char* p = protocol::SERVICE_UUID; *p != '\0'; ++p) {
        if (*p != '-') {
            digits += *p;
        }
    }
    std::vector<uint8_t> bytes = hex(digits);
    return std::vector<uint8_t>(bytes.rbegin(), bytes.rend());
}

std::vector<uint8_t> payload(uint16_t beaconId, uint8_t counter, uint16_t uptimeMin) {
    return {1, static_cast<uint8_t>(beaconId & 0xFF), static_cast<uint8_t>(beaconId >> 8), counter,
            static_cast<uint8_t>(uptimeMin & 0xFF), static_cast<uint8_t>(uptimeMin >> 8)};
}

std::vector<uint8_t> advertising(uint16_t beaconId, uint8_t counter, uint16_t uptimeMin) {
    std::vector<uint8_t> data = {0x02, 0x01, 0x06, 0x11, 0x07};
    const std::vector<uint8_t> uuid = serviceUuidLe();
    data.insert(data.end(), uuid.begin(), uuid.end());
    const std::vector<uint8_t> manufacturer = {0x09, 0xFF, 0xFF, 0xFF};  // company id 0xFFFF
    data.insert(data.end(), manufacturer.begin(), manufacturer.end());
    const std::vector<uint8_t> body = payload(beaconId, counter, uptimeMin);
    data.insert(data.end(), body.begin(), body.end());
    return data;  // 31 bytes: no room for the name
}

std::vector<uint8_t> scanResponse() {
    std::vector<uint8_t> data = {static_cast<uint8_t>(strlen(protocol::DEFAULT_LOCAL_NAME) + 1),
                                 0x09};
    for (const char* p = protocol::DEFAULT_LOCAL_NAME; *p != '\0'; ++p) {
        data.push_back(static_cast<uint8_t>(*p));
    }
    return data;
}

std::vector<uint8_t> info(uint16_t beaconId) {
    return {1, FW_VERSION_MAJOR, FW_VERSION_MINOR, FW_VERSION_PATCH,
            static_cast<uint8_t>(beaconId & 0xFF), static_cast<uint8_t>(beaconId >> 8), 0, 0};
}

}  // namespace driver
