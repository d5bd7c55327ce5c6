// The beacon-sim bridge (sim/bridge.cpp) on the booted sketch: what it tells the Python side, and
// how the Python side's events reach the sketch. The end-to-end path (bumble, a pty, VirtualRadio)
// is tests/test_sketch_beacon.py.
#include <string>
#include <vector>

#include "bridge.h"
#include "driver.h"
#include "harness.h"
#include "protocol.h"
#include "sim_id.h"

using driver::boot;
using driver::command;

namespace {

std::string hexOf(const char* text) {
    return sim::toHex(std::vector<uint8_t>(text, text + std::string(text).size()));
}

std::string advLine(uint16_t id, uint8_t counter) {
    return "adv " + sim::toHex(driver::advertising(id, counter, 0)) + " " +
           sim::toHex(driver::scanResponse()) + "\n";
}

std::string valueLine(const char* uuid, const std::vector<uint8_t>& value) {
    return std::string("value ") + uuid + " " + sim::toHex(value) + "\n";
}

void handle(sim::Bridge& bridge, const std::string& line) {
    std::string error;
    if (!bridge.handle(line, &error)) {
        harness::fail(__FILE__, __LINE__, "'" + line + "' refused: " + error);
    }
}

}  // namespace

TEST(bridge_first_sync_describes_the_device_then_its_state) {
    boot();
    sim::Bridge bridge;
    const std::string expected =
        "name " + hexOf(protocol::DEFAULT_LOCAL_NAME) + "\n" +
        "service " + protocol::SERVICE_UUID + "\n" +
        "char " + protocol::INFO_CHAR_UUID + " 02\n" +      // BLERead
        "char " + protocol::IDENTIFY_CHAR_UUID + " 08\n" +  // BLEWrite
        "ready\n" +
        valueLine(protocol::INFO_CHAR_UUID, driver::info(0)) +
        valueLine(protocol::IDENTIFY_CHAR_UUID, {}) +
        "led 0\n" + advLine(0, 0);
    CHECK_EQ(bridge.sync(), expected);
    CHECK_EQ(bridge.sync(), std::string());  // nothing changed
}

TEST(bridge_connect_stops_advertising_and_disconnect_resumes_with_a_new_counter) {
    boot();
    sim::Bridge bridge;
    bridge.sync();
    handle(bridge, "connected");
    driver::loopOnce();
    CHECK_EQ(bridge.sync(), std::string("adv-off\n"));
    CHECK_EQ(command("status").find("connected=yes") != std::string::npos, true);

    handle(bridge, "disconnected");
    driver::loopOnce();
    CHECK_EQ(bridge.sync(), advLine(0, 1));
}

TEST(bridge_adv_off_drops_the_hosts_link_and_a_late_disconnected_is_harmless) {
    boot();
    sim::Bridge bridge;
    bridge.sync();
    handle(bridge, "connected");
    driver::loopOnce();
    bridge.sync();

    CHECK_EQ(command("adv off"), std::string("ok adv=off"));
    CHECK_EQ(bridge.sync(), std::string("disconnect\n"));  // advertising was already off on air
    handle(bridge, "disconnected");                       // bumble reports the link it dropped
    driver::runFor(2000);
    CHECK_EQ(bridge.sync(), std::string());
    CHECK_EQ(fake_ble::advertising(), false);

    CHECK_EQ(command("adv on"), std::string("ok adv=on"));
    CHECK_EQ(bridge.sync(), advLine(0, 1));
}

TEST(bridge_id_command_updates_info_before_the_advertising_data) {
    boot();
    sim::Bridge bridge;
    bridge.sync();
    CHECK_EQ(command("id 7"), std::string("ok id=7"));
    CHECK_EQ(bridge.sync(), valueLine(protocol::INFO_CHAR_UUID, driver::info(7)) + advLine(7, 1));
}

TEST(bridge_identify_write_reaches_the_sketch_and_the_led_is_reported) {
    boot();
    sim::Bridge bridge;
    bridge.sync();
    handle(bridge, "connected");
    handle(bridge, std::string("write ") + protocol::IDENTIFY_CHAR_UUID + " 02");
    driver::loopOnce();
    CHECK_EQ(bridge.sync(), valueLine(protocol::IDENTIFY_CHAR_UUID, {2}) + "led 1\n" + "adv-off\n");
    driver::runFor(250);
    CHECK_EQ(bridge.sync(), std::string("led 0\n"));
}

TEST(bridge_connection_to_a_silent_beacon_is_refused) {
    boot();
    sim::Bridge bridge;
    bridge.sync();
    CHECK_EQ(command("adv off"), std::string("ok adv=off"));
    bridge.sync();
    // bumble connected just before it heard of `adv off`: the stand-in has nothing to connect to.
    handle(bridge, "connected");
    driver::loopOnce();
    CHECK_EQ(bridge.sync(), std::string("disconnect\n"));
    CHECK_EQ(command("status").find("connected=no") != std::string::npos, true);
}

TEST(bridge_refuses_malformed_messages) {
    boot();
    sim::Bridge bridge;
    bridge.sync();
    std::string error;
    CHECK(!bridge.handle("hello", &error));
    CHECK_EQ(error, std::string("unknown message: hello"));
    CHECK(!bridge.handle("connected now", &error));
    CHECK(!bridge.handle(std::string("write ") + protocol::IDENTIFY_CHAR_UUID + " 0", &error));
    CHECK_EQ(error.compare(0, 10, "bad hex in"), 0);
    // Not linked: ATT has no peer to take a write from.
    CHECK(!bridge.handle(std::string("write ") + protocol::IDENTIFY_CHAR_UUID + " 05", &error));
    CHECK_EQ(error.compare(0, 13, "write refused"), 0);
    CHECK(!bridge.handle("", &error));
}

TEST(bridge_hex_round_trips_and_rejects_junk) {
    std::vector<uint8_t> bytes;
    CHECK(sim::fromHex("00ff7A", &bytes));
    CHECK_EQ(bytes, std::vector<uint8_t>({0x00, 0xff, 0x7a}));
    CHECK_EQ(sim::toHex(bytes), std::string("00ff7a"));
    CHECK(sim::fromHex("-", &bytes));
    CHECK(bytes.empty());
    CHECK_EQ(sim::toHex(bytes), std::string("-"));
    CHECK(!sim::fromHex("", &bytes));
    CHECK(!sim::fromHex("abc", &bytes));
    CHECK(!sim::fromHex("zz", &bytes));
}

TEST(sim_beacon_id_accepts_0_to_65535_only) {
    uint16_t id = 1;
    CHECK(sim::parseBeaconId("0", &id));
    CHECK_EQ(id, static_cast<uint16_t>(0));
    CHECK(sim::parseBeaconId("65535", &id));
    CHECK_EQ(id, static_cast<uint16_t>(65535));
    CHECK(!sim::parseBeaconId("65536", &id));
    CHECK(!sim::parseBeaconId("99999999999999999999", &id));
    CHECK(!sim::parseBeaconId("-1", &id));
    CHECK(!sim::parseBeaconId("7a", &id));
    CHECK(!sim::parseBeaconId("", &id));
    CHECK(!sim::parseBeaconId(nullptr, &id));
}
