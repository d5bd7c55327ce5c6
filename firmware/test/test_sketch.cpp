// The whole sketch (beacon.ino + logic) on the ArduinoBLE/Arduino stand-ins, driven through
// setup()/loop(), the serial port and a fake central. Each test is a fresh boot (own process).
#include <stdlib.h>

#include <string>
#include <vector>

#include "driver.h"
#include "harness.h"
#include "protocol.h"

using driver::boot;
using driver::command;
using driver::runFor;

namespace {

const pin_size_t LED = LED_BUILTIN;
const uint32_t MINUTE = 60000;

std::string status() { return command("status"); }

}  // namespace

// --- boot and advertising ----------------------------------------------------------------------

TEST(boot_starts_advertising) {
    const std::string out = boot();
    CHECK(driver::contains(out, "BLE beacon active"));
    CHECK_EQ(fake_arduino::serialBaud(), static_cast<unsigned long>(protocol::SERIAL_BAUD));
    CHECK(fake_arduino::pinModeOf(LED) == OUTPUT);
    CHECK(fake_arduino::pinLevel(LED) == LOW);
    CHECK(fake_ble::advertising());
    // BEACON_ID defaults to 0 ("not provisioned").
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 0, 0));
}

TEST(advertising_data_is_31_bytes_name_in_scan_response) {
    boot();
    const std::vector<uint8_t> data = fake_ble::advertisingData();
    CHECK(data.size() <= static_cast<size_t>(protocol::LEGACY_ADV_MAX));
    CHECK_EQ(data.size(), static_cast<size_t>(31));
    const std::string asText(data.begin(), data.end());
    CHECK(asText.find(protocol::DEFAULT_LOCAL_NAME) == std::string::npos);
    CHECK_EQ(fake_ble::scanResponseData(), driver::scanResponse());
    // protocol.scan_response_data("SG Beacon").hex()
    CHECK_EQ(fake_ble::scanResponseData(), driver::hex("0a09534720426561636f6e"));
    CHECK_EQ(std::string(fake_ble::deviceName()), std::string(protocol::DEFAULT_LOCAL_NAME));
}

namespace {

uint8_t counterNow() {
    const std::string reply = status();
    const size_t at = reply.find(" counter=");
    CHECK(at != std::string::npos);
    return static_cast<uint8_t>(strtoul(reply.c_str() + at + 9, nullptr, 10));
}

// Steers the running sketch to a vector's id, counter and uptime using only what a real beacon
// does (a refresh a minute, `id`, reconnects), then compares the bytes on air.
void checkVectorOnAir(size_t index) {
    const size_t count = sizeof(protocol::PAYLOAD_VECTORS) / sizeof(protocol::PAYLOAD_VECTORS[0]);
    CHECK(count >= 4);
    if (index >= count) {
        return;
    }
    const protocol::PayloadVector& vector = protocol::PAYLOAD_VECTORS[index];
    boot();
    for (uint32_t minute = 0; minute < vector.uptime_min; ++minute) {
        fake_arduino::advanceMillis(MINUTE);
        driver::loopOnce();
    }
    CHECK_EQ(command("id " + std::to_string(vector.beacon_id)),
             "ok id=" + std::to_string(vector.beacon_id));
    // Each reconnect advertises fresh data: counter + 1, no time passes.
    for (int cycles = 0; counterNow() != vector.counter; ++cycles) {
        CHECK(cycles < 256);
        CHECK(fake_ble::connect());
        CHECK(fake_ble::disconnect());
        driver::loopOnce();
    }
    const std::vector<uint8_t> data = fake_ble::advertisingData();
    CHECK_EQ(data, driver::advertising(vector.beacon_id, vector.counter, vector.uptime_min));
    CHECK_EQ(std::vector<uint8_t>(data.end() - protocol::PAYLOAD_LEN, data.end()),
             driver::hex(vector.hex));
}

}  // namespace

TEST(python_vector_0_on_air) { checkVectorOnAir(0); }
TEST(python_vector_1_on_air) { checkVectorOnAir(1); }
TEST(python_vector_2_on_air) { checkVectorOnAir(2); }
TEST(python_vector_3_on_air) { checkVectorOnAir(3); }

TEST(refresh_every_minute_bumps_counter_and_uptime) {
    boot();
    runFor(MINUTE - 20);
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 0, 0));
    runFor(20);
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 1, 1));
    runFor(9 * MINUTE, 1000);
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 10, 10));
    CHECK_EQ(status(), "ok id=0 adv=on connected=no connections=0 counter=10 uptime_min=10 "
                       "identify=0 ble=ok");
}

TEST(counter_wraps_and_uptime_saturates) {
    boot();
    // 65540 minutes, checked along the way; the counter is a u8 and wraps.
    for (uint32_t minute = 1; minute <= 65540; ++minute) {
        fake_arduino::advanceMillis(MINUTE);
        driver::loopOnce();
        if (minute == 255 || minute == 256 || minute == 65535 || minute == 65540) {
            const uint16_t uptime = minute > 65535 ? 65535 : static_cast<uint16_t>(minute);
            CHECK_EQ(fake_ble::advertisingData(),
                     driver::advertising(0, static_cast<uint8_t>(minute & 0xFF), uptime));
        }
    }
}

TEST(millis_wraparound) {
    fake_arduino::setMillis(0xFFFFFFFFu - 5000);  // the board has been up 49.7 days
    boot();
    runFor(MINUTE + 100, 100);
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 1, 1));
    CHECK(::millis() < 100000ul);  // it did wrap
}

TEST(setter_failures_are_reported) {
    fake_ble::failNext(fake_ble::Fail::SetLocalName);
    const std::string out = boot();
    CHECK(driver::contains(out, "BLE failed: setLocalName"));
    CHECK(driver::contains(out, "BLE beacon active"));  // still a beacon, just without a name
}

TEST(raw_data_failure_is_reported_and_retried) {
    fake_ble::failNext(fake_ble::Fail::SetRawData);
    const std::string out = boot();
    CHECK(driver::contains(out, "BLE failed: setRawData"));
    CHECK(!driver::contains(out, "BLE beacon active"));
    runFor(1000);
    CHECK(driver::contains(fake_arduino::takeSerialOutput(), "BLE beacon active"));
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 0, 0));
}

TEST(advertise_failure_is_reported_and_retried) {
    fake_ble::failNext(fake_ble::Fail::Advertise, 2);
    const std::string out = boot();
    CHECK(driver::contains(out, "BLE failed: advertise"));
    CHECK(!fake_ble::advertising());
    runFor(1000);
    CHECK(driver::contains(fake_arduino::takeSerialOutput(), "BLE failed: advertise"));
    runFor(1000);
    CHECK(driver::contains(fake_arduino::takeSerialOutput(), "BLE beacon active"));
    CHECK(fake_ble::advertising());
    // Failed attempts do not count: the first data on air carries counter 0.
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 0, 0));
}

TEST(ble_begin_failure_keeps_serial_working) {
    fake_ble::failNext(fake_ble::Fail::Begin);
    const std::string out = boot();
    CHECK(driver::contains(out, "BLE failed: begin"));
    CHECK(!driver::contains(out, "BLE beacon active"));
    CHECK(!fake_ble::advertising());
    CHECK_EQ(command("version"), "ok firmware=0.1.0 protocol=1");
    CHECK_EQ(command("id 5"), "ok id=5");
    CHECK_EQ(command("adv on"), "err bluetooth did not start; reset the board");
    CHECK_EQ(status(),
             "ok id=5 adv=off connected=no connections=0 counter=0 uptime_min=0 identify=0 "
             "ble=failed");
    CHECK_EQ(fake_ble::pollCalls(), 0);  // no BLE.poll() on a radio that never started
}

// --- serial commands ---------------------------------------------------------------------------

TEST(command_replies) {
    boot();
    CHECK_EQ(command("help"),
             "ok commands: help, version, id, id <1-65535>, status, adv on, adv off");
    CHECK_EQ(command("version"), "ok firmware=0.1.0 protocol=1");
    CHECK_EQ(command("id"), "ok id=0");
    CHECK_EQ(status(),
             "ok id=0 adv=on connected=no connections=0 counter=0 uptime_min=0 identify=0 ble=ok");
    CHECK_EQ(command("frobnicate"), "err unknown command (try help)");
    CHECK_EQ(command("id 0"), "err usage: id [1-65535]");
    CHECK_EQ(command("id 70000"), "err usage: id [1-65535]");
    CHECK_EQ(command("id seven"), "err usage: id [1-65535]");
    CHECK_EQ(command("adv sideways"), "err usage: adv on|off");
    CHECK_EQ(command("version 2"), "err takes no arguments");
    CHECK_EQ(command("STATUS").substr(0, 8), "ok id=0 ");
    CHECK_EQ(command(std::string(100, 'z')), "err line too long");
}

TEST(set_id_updates_info_and_advertising_at_once) {
    boot();
    CHECK_EQ(command("id 42"), "ok id=42");
    CHECK_EQ(command("id"), "ok id=42");
    // New data right away (counter + 1), not at the next minute.
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(42, 1, 0));
    CHECK(fake_ble::connect());
    driver::loopOnce();
    CHECK_EQ(fake_ble::read(protocol::INFO_CHAR_UUID), driver::info(42));
}

TEST(set_id_reports_info_failure) {
    boot();
    fake_ble::failNext(fake_ble::Fail::WriteValue);
    CHECK_EQ(command("id 9"), "err id=9 set but the info characteristic kept the old one");
    CHECK(driver::lastLog.find("BLE failed: info writeValue") != std::string::npos);
}

TEST(serial_input_in_pieces_and_crlf) {
    boot();
    fake_arduino::serialInput("ver");
    driver::loopOnce();
    CHECK_EQ(fake_arduino::takeSerialOutput(), "");
    fake_arduino::serialInput("sion\r\nid\r\n\r\n");
    driver::loopOnce();
    CHECK_EQ(fake_arduino::takeSerialOutput(), "ok firmware=0.1.0 protocol=1\r\nok id=0\r\n");
}

// --- connections -------------------------------------------------------------------------------

TEST(info_characteristic_readable) {
    boot();
    CHECK(fake_ble::serves(protocol::SERVICE_UUID, protocol::INFO_CHAR_UUID));
    CHECK(fake_ble::serves(protocol::SERVICE_UUID, protocol::IDENTIFY_CHAR_UUID));
    CHECK(fake_ble::connect());
    driver::loopOnce();
    CHECK_EQ(fake_ble::read(protocol::INFO_CHAR_UUID), driver::info(0));
    CHECK_EQ(fake_ble::read(protocol::IDENTIFY_CHAR_UUID), std::vector<uint8_t>());  // write-only
    CHECK(!fake_ble::write(protocol::INFO_CHAR_UUID, {1}));                           // read-only
}

TEST(no_advertising_while_connected_resumes_after_disconnect) {
    boot();
    CHECK(fake_ble::connect());
    driver::loopOnce();
    CHECK(driver::contains(fake_arduino::takeSerialOutput(), "central connected"));
    CHECK_EQ(status(),
             "ok id=0 adv=on connected=yes connections=1 counter=0 uptime_min=0 identify=0 ble=ok");
    const int advertisesBefore = fake_ble::advertiseCalls();
    runFor(3 * MINUTE, 1000);  // refreshes are due, but must wait for the disconnect
    CHECK(!fake_ble::advertising());
    CHECK_EQ(fake_ble::advertiseCalls(), advertisesBefore);
    CHECK(!fake_ble::connect());  // a second central finds nothing to connect to

    CHECK(fake_ble::disconnect());
    driver::loopOnce();
    CHECK(driver::contains(fake_arduino::takeSerialOutput(), "central disconnected"));
    CHECK(fake_ble::advertising());
    // Fresh data: one refresh, current uptime.
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 1, 3));
    CHECK(fake_ble::connect());
}

TEST(short_connection_resumes_with_fresh_data) {
    boot();
    runFor(1000);
    CHECK(fake_ble::connect());
    runFor(1000);
    CHECK(fake_ble::disconnect());
    driver::loopOnce();
    // No refresh was due: the new data comes from resuming after the disconnect.
    CHECK(fake_ble::advertising());
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 1, 0));
}

TEST(resumes_even_if_the_library_does_not) {
    fake_ble::setAutoResume(false);  // e.g. an ArduinoBLE release that left advertising off
    boot();
    for (int cycle = 0; cycle < 100; ++cycle) {
        CHECK(fake_ble::connect());
        driver::runFor(20, 10);
        CHECK(fake_ble::disconnect());
        driver::loopOnce();
        CHECK(fake_ble::advertising());
    }
}

TEST(thousand_connect_disconnect_cycles) {
    boot();
    for (int cycle = 0; cycle < 1000; ++cycle) {
        // A central can only connect when the beacon advertises: this checks resumption.
        CHECK(fake_ble::connect());
        if (cycle % 3 == 0) {
            // Connect and disconnect delivered in the same BLE.poll().
            CHECK(fake_ble::disconnect());
            driver::loopOnce();
        } else {
            driver::runFor(30, 10);
            CHECK(!fake_ble::advertising());
            if (cycle % 10 == 1) {
                CHECK_EQ(fake_ble::read(protocol::INFO_CHAR_UUID), driver::info(0));
            }
            CHECK(fake_ble::disconnect());
            driver::loopOnce();
        }
        CHECK(fake_ble::advertising());
        fake_arduino::advanceMillis(7);
    }
    CHECK(status().find(" connected=no connections=1000 ") != std::string::npos);
    CHECK_EQ(fake_ble::reentrantCalls(), 0);
    // One advertise() at boot and one per reconnection (under a minute passed: no refresh).
    CHECK(::millis() < MINUTE);
    CHECK_EQ(fake_ble::advertiseCalls(), 1001);
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 1000 % 256, 0));
}

TEST(adv_off_disconnects_and_stays_silent) {
    boot();
    CHECK(fake_ble::connect());
    driver::loopOnce();
    fake_arduino::takeSerialOutput();
    CHECK_EQ(command("adv off"), "ok adv=off");
    CHECK(!fake_ble::linked());
    CHECK(!fake_ble::advertising());
    runFor(5 * MINUTE, 1000);  // the pending disconnect event, refresh timers: still silent
    CHECK(!fake_ble::advertising());
    CHECK(!fake_ble::connect());
    CHECK_EQ(status(),
             "ok id=0 adv=off connected=no connections=1 counter=0 uptime_min=5 identify=0 ble=ok");
    CHECK_EQ(fake_ble::reentrantCalls(), 0);

    CHECK_EQ(command("adv on"), "ok adv=on");
    CHECK(driver::lastLog.find("BLE beacon active") != std::string::npos);
    CHECK(fake_ble::advertising());
    CHECK_EQ(fake_ble::advertisingData(), driver::advertising(0, 1, 5));
    CHECK(fake_ble::connect());
    driver::loopOnce();
    CHECK_EQ(fake_ble::read(protocol::INFO_CHAR_UUID), driver::info(0));
}

TEST(adv_off_on_without_central_and_repeated) {
    boot();
    CHECK_EQ(command("adv off"), "ok adv=off");
    CHECK_EQ(command("adv off"), "ok adv=off");
    CHECK(!fake_ble::advertising());
    CHECK_EQ(command("adv on"), "ok adv=on");
    CHECK(driver::lastLog.find("BLE beacon active") != std::string::npos);
    CHECK_EQ(command("adv on"), "ok adv=on");
    CHECK(driver::lastLog.find("BLE beacon active") == std::string::npos);  // already active
    CHECK(fake_ble::advertising());
    for (int i = 0; i < 50; ++i) {
        CHECK_EQ(command("adv off"), "ok adv=off");
        CHECK(!fake_ble::advertising());
        CHECK_EQ(command("adv on"), "ok adv=on");
        CHECK(fake_ble::advertising());
    }
}

TEST(adv_on_failure_is_an_error_then_retried) {
    boot();
    CHECK_EQ(command("adv off"), "ok adv=off");
    fake_ble::failNext(fake_ble::Fail::Advertise);
    CHECK_EQ(command("adv on"), "err advertising failed; retrying");
    runFor(1000);
    CHECK(fake_ble::advertising());
    CHECK(driver::contains(fake_arduino::takeSerialOutput(), "BLE beacon active"));
}

// --- identify ----------------------------------------------------------------------------------

TEST(identify_blinks_for_the_written_seconds) {
    boot();
    CHECK(fake_ble::connect());
    driver::loopOnce();
    const unsigned before = fake_arduino::pinChanges(LED);
    CHECK(fake_ble::write(protocol::IDENTIFY_CHAR_UUID, {3}));
    driver::loopOnce();
    CHECK(fake_arduino::pinLevel(LED) == HIGH);
    CHECK(status().find(" identify=3 ") != std::string::npos);
    runFor(2990);
    // 2 Hz: a change every 250 ms.
    const unsigned changes = fake_arduino::pinChanges(LED) - before;
    CHECK(changes >= 11 && changes <= 12);
    runFor(20);
    CHECK(fake_arduino::pinLevel(LED) == LOW);
    const unsigned after = fake_arduino::pinChanges(LED);
    runFor(10000, 50);
    CHECK_EQ(fake_arduino::pinChanges(LED), after);  // stopped for good
    CHECK(fake_arduino::pinLevel(LED) == LOW);
}

TEST(identify_is_clamped_and_can_be_stopped) {
    boot();
    CHECK(fake_ble::connect());
    driver::loopOnce();
    CHECK(fake_ble::write(protocol::IDENTIFY_CHAR_UUID, {200}));
    driver::loopOnce();
    CHECK(status().find(" identify=30 ") != std::string::npos);
    runFor(29900, 50);
    const unsigned during = fake_arduino::pinChanges(LED);
    runFor(200, 50);
    CHECK(fake_arduino::pinLevel(LED) == LOW);
    runFor(2000, 50);
    CHECK(fake_arduino::pinChanges(LED) - during <= 1);  // stopped at 30 s, not 200 s

    CHECK(fake_ble::write(protocol::IDENTIFY_CHAR_UUID, {10}));
    runFor(600, 50);
    CHECK(fake_ble::write(protocol::IDENTIFY_CHAR_UUID, {0}));  // 0 stops at once
    driver::loopOnce();
    CHECK(fake_arduino::pinLevel(LED) == LOW);
    const unsigned stopped = fake_arduino::pinChanges(LED);
    runFor(3000, 50);
    CHECK_EQ(fake_arduino::pinChanges(LED), stopped);
    CHECK(status().find(" identify=0 ") != std::string::npos);
}

TEST(identify_ignores_empty_write_and_survives_disconnect) {
    boot();
    CHECK(fake_ble::connect());
    driver::loopOnce();
    CHECK(fake_ble::write(protocol::IDENTIFY_CHAR_UUID, {}));
    runFor(1000);
    CHECK_EQ(fake_arduino::pinChanges(LED), 0u);
    CHECK(fake_ble::write(protocol::IDENTIFY_CHAR_UUID, {2, 99}));  // extra bytes are cut
    CHECK(fake_ble::disconnect());
    driver::loopOnce();
    CHECK(fake_arduino::pinLevel(LED) == HIGH);
    CHECK(fake_ble::advertising());
    runFor(2100);
    CHECK(fake_arduino::pinLevel(LED) == LOW);
    CHECK(fake_arduino::pinChanges(LED) >= 7u);
}
