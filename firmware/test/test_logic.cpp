// The portable logic on its own: byte builders against protocol.py's vectors, the line reader and
// the command parser.
#include <string.h>

#include <string>
#include <vector>

#include "advertising.h"
#include "commands.h"
#include "driver.h"
#include "harness.h"
#include "protocol.h"
#include "version.h"

using driver::hex;

namespace {

std::vector<uint8_t> bytes(const uint8_t* data, size_t length) {
    return std::vector<uint8_t>(data, data + length);
}

}  // namespace

TEST(payload_matches_python_vectors) {
    size_t count = 0;
    for (const protocol::PayloadVector& vector : protocol::PAYLOAD_VECTORS) {
        uint8_t out[protocol::PAYLOAD_LEN];
        fw::packPayload(out, vector.beacon_id, vector.counter, vector.uptime_min);
        CHECK_EQ(bytes(out, sizeof(out)), hex(vector.hex));
        ++count;
    }
    CHECK(count >= 4);
}

TEST(service_uuid_bytes_match_uuid_string) {
    CHECK_EQ(bytes(protocol::SERVICE_UUID_LE, sizeof(protocol::SERVICE_UUID_LE)),
             driver::serviceUuidLe());
}

TEST(advertising_data_layout_for_every_vector) {
    for (const protocol::PayloadVector& vector : protocol::PAYLOAD_VECTORS) {
        const std::vector<uint8_t> body = hex(vector.hex);
        uint8_t out[protocol::LEGACY_ADV_MAX + 8];
        memset(out, 0xAA, sizeof(out));  // to see a write past 31 bytes
        const size_t length =
            fw::buildAdvertisingData(out, body.data(), protocol::DEFAULT_LOCAL_NAME);
        CHECK(length <= protocol::LEGACY_ADV_MAX);
        CHECK_EQ(length, static_cast<size_t>(31));
        CHECK_EQ(out[protocol::LEGACY_ADV_MAX], 0xAA);
        CHECK_EQ(bytes(out, length),
                 driver::advertising(vector.beacon_id, vector.counter, vector.uptime_min));
        // The manufacturer payload is the last 6 bytes, exactly the vector.
        CHECK_EQ(bytes(out + length - protocol::PAYLOAD_LEN, protocol::PAYLOAD_LEN), body);
    }
}

TEST(advertising_data_fields_walk) {
    uint8_t payload[protocol::PAYLOAD_LEN];
    fw::packPayload(payload, 42, 7, 90);
    uint8_t out[protocol::LEGACY_ADV_MAX];
    const size_t length = fw::buildAdvertisingData(out, payload, protocol::DEFAULT_LOCAL_NAME);
    // Walk the AD structures: flags, complete 128-bit UUID list, manufacturer data, and no name.
    std::vector<uint8_t> types;
    size_t offset = 0;
    while (offset < length) {
        const size_t fieldLength = out[offset];
        CHECK(fieldLength >= 1);
        CHECK(offset + 1 + fieldLength <= length);
        types.push_back(out[offset + 1]);
        offset += 1 + fieldLength;
    }
    CHECK_EQ(offset, length);
    CHECK_EQ(types, (std::vector<uint8_t>{0x01, 0x07, 0xFF}));
}

TEST(advertising_data_equals_python_bytes) {
    // protocol.advertising_data(BeaconPayload(42, 7, 90), "SG Beacon").hex()
    uint8_t payload[protocol::PAYLOAD_LEN];
    fw::packPayload(payload, 42, 7, 90);
    uint8_t out[protocol::LEGACY_ADV_MAX];
    const size_t length = fw::buildAdvertisingData(out, payload, protocol::DEFAULT_LOCAL_NAME);
    CHECK_EQ(bytes(out, length),
             hex("02010611070b4622809191f9808b46b9fc433fc8a009ffffff012a00075a00"));
}

TEST(local_name_only_when_it_fits) {
    uint8_t payload[protocol::PAYLOAD_LEN];
    fw::packPayload(payload, 1, 0, 0);
    uint8_t withName[protocol::LEGACY_ADV_MAX];
    uint8_t withoutName[protocol::LEGACY_ADV_MAX];
    const size_t a = fw::buildAdvertisingData(withName, payload, "X");  // even 1 char needs 3 bytes
    const size_t b = fw::buildAdvertisingData(withoutName, payload, nullptr);
    CHECK_EQ(a, b);
    CHECK_EQ(bytes(withName, a), bytes(withoutName, b));
}

TEST(info_value_layout) {
    uint8_t out[protocol::INFO_LEN];
    fw::packInfo(out, 0xBEEF);
    CHECK_EQ(bytes(out, sizeof(out)), hex("01000100efbe0000"));  // protocol 1, firmware 0.1.0
    CHECK_EQ(bytes(out, sizeof(out)), driver::info(0xBEEF));
    CHECK_EQ(std::string(FIRMWARE_VERSION), std::string("0.1.0"));
}

// --- LineReader --------------------------------------------------------------------------------

namespace {

std::vector<std::string> feedAll(fw::LineReader& reader, const std::string& input) {
    std::vector<std::string> result;
    for (char c : input) {
        if (reader.feed(c)) {
            result.push_back(std::string(reader.overflowed() ? "!" : "") + reader.line());
        }
    }
    return result;
}

}  // namespace

TEST(line_reader_line_endings) {
    fw::LineReader reader;
    const std::vector<std::string> got = feedAll(reader, "a\nb\r\nc\rd\n\n\r\n");
    CHECK_EQ(got.size(), static_cast<size_t>(4));
    CHECK_EQ(got[0], "a");
    CHECK_EQ(got[1], "b");
    CHECK_EQ(got[2], "c");
    CHECK_EQ(got[3], "d");
}

TEST(line_reader_overflow_then_recovers) {
    fw::LineReader reader;
    const std::string longLine(fw::LineReader::MAX_LINE + 10, 'x');
    const std::vector<std::string> got = feedAll(reader, longLine + "\nstatus\n");
    CHECK_EQ(got.size(), static_cast<size_t>(2));
    CHECK_EQ(got[0].substr(0, 1), "!");
    CHECK_EQ(got[1], "status");
    // Exactly MAX_LINE characters still fit.
    const std::string fits(fw::LineReader::MAX_LINE, 'y');
    const std::vector<std::string> again = feedAll(reader, fits + "\n");
    CHECK_EQ(again.size(), static_cast<size_t>(1));
    CHECK_EQ(again[0], fits);
}

// --- parseCommand ------------------------------------------------------------------------------

TEST(parse_commands) {
    CHECK(fw::parseCommand("help").kind == fw::CommandKind::Help);
    CHECK(fw::parseCommand("version").kind == fw::CommandKind::Version);
    CHECK(fw::parseCommand("status").kind == fw::CommandKind::Status);
    CHECK(fw::parseCommand("id").kind == fw::CommandKind::GetId);
    CHECK(fw::parseCommand("adv on").kind == fw::CommandKind::AdvOn);
    CHECK(fw::parseCommand("adv off").kind == fw::CommandKind::AdvOff);
    CHECK(fw::parseCommand("").kind == fw::CommandKind::Empty);
    CHECK(fw::parseCommand("  \t ").kind == fw::CommandKind::Empty);
    // Spacing and case do not matter.
    CHECK(fw::parseCommand("  ADV   On ").kind == fw::CommandKind::AdvOn);
    CHECK(fw::parseCommand("Status").kind == fw::CommandKind::Status);
}

TEST(parse_set_id) {
    fw::Command command = fw::parseCommand("id 42");
    CHECK(command.kind == fw::CommandKind::SetId);
    CHECK_EQ(command.id, static_cast<uint16_t>(42));
    command = fw::parseCommand("id 65535");
    CHECK(command.kind == fw::CommandKind::SetId);
    CHECK_EQ(command.id, static_cast<uint16_t>(65535));
    command = fw::parseCommand("id 00007");
    CHECK_EQ(command.id, static_cast<uint16_t>(7));
    const char* bad[] = {"id 0", "id 65536", "id 123456", "id -1", "id 1x", "id 0x10", "id 1 2"};
    for (const char* line : bad) {
        command = fw::parseCommand(line);
        CHECK(command.kind == fw::CommandKind::Invalid);
        CHECK_EQ(std::string(command.error), "usage: id [1-65535]");
    }
}

TEST(parse_errors) {
    CHECK_EQ(std::string(fw::parseCommand("reboot").error), "unknown command (try help)");
    CHECK_EQ(std::string(fw::parseCommand("helpme").error), "unknown command (try help)");
    CHECK_EQ(std::string(fw::parseCommand("adv").error), "usage: adv on|off");
    CHECK_EQ(std::string(fw::parseCommand("adv maybe").error), "usage: adv on|off");
    CHECK_EQ(std::string(fw::parseCommand("status now").error), "takes no arguments");
    CHECK_EQ(std::string(fw::parseCommand("a b c d").error), "too many words (try help)");
}
