// Host implementation of ArduinoBLE.h: the library's bookkeeping plus a tiny model of the
// controller and of one central, which the tests drive through fakes.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <deque>
#include <string>
#include <vector>

#include "ArduinoBLE.h"
#include "fakes.h"

// Plain data, so it is zero-initialised before any constructor runs: the sketch's global
// characteristics are constructed during static initialisation and take their storage from here.
struct BLELocalCharacteristic {
    static const int MAX_VALUE = 64;  // enough for this sketch; ArduinoBLE allows up to 512
    const char* uuid;
    uint8_t properties;
    int valueSize;
    bool fixedLength;
    uint8_t value[MAX_VALUE];
    int valueLength;
    BLECharacteristicEventHandler handlers[BLECharacteristicEventLast];
};

namespace {

[[noreturn]] void misuse(const char* what) {
    fprintf(stderr, "ArduinoBLE stand-in: %s\n", what);
    abort();
}

const int POOL_SIZE = 8;
BLELocalCharacteristic pool[POOL_SIZE];
int poolUsed = 0;

const int FAIL_KINDS = 5;
int failures[FAIL_KINDS];

bool takeFailure(fake_ble::Fail call) {
    int& left = failures[static_cast<int>(call)];
    if (left > 0) {
        --left;
        return true;
    }
    return false;
}

struct Event {
    enum Type { ConnectionComplete, DisconnectionComplete, AttWrite } type;
    BLELocalCharacteristic* characteristic;
    std::vector<uint8_t> value;
};

struct Gatt {
    static const int MAX_SERVICES = 4;
    static const int MAX_CHARACTERISTICS = MAX_SERVICES * BLEService::MAX_CHARACTERISTICS;
    const char* serviceUuids[MAX_SERVICES];
    BLELocalCharacteristic* characteristics[MAX_CHARACTERISTICS];
    int serviceOf[MAX_CHARACTERISTICS];  // index into serviceUuids
    int serviceCount;
    int characteristicCount;
};

struct State {
    bool begun = false;
    // GAP's own flag (GAPClass::_advertising): set by advertise(), cleared by stopAdvertise().
    bool gapAdvertising = false;
    // The controller: is it advertising, is there a link, and the bytes it sends.
    bool advertisingEnabled = false;
    bool link = false;
    std::vector<uint8_t> advertisingOnAir;
    std::vector<uint8_t> scanResponseOnAir;
    // ATT's peer table: a connected central as the library sees it.
    bool peer = false;
    bool autoResume = true;
    std::deque<Event> events;
    BLEDeviceEventHandler deviceHandlers[BLEDeviceLastEvent] = {};
    const char* deviceName = "Arduino";
    Gatt gatt = {};
    int handlerDepth = 0;
    int reentrant = 0;
    int polls = 0;
    int advertiseCalls = 0;
};

State& state() {
    static State instance;
    return instance;
}

void callDeviceHandler(BLEDeviceEvent event) {
    BLEDeviceEventHandler handler = state().deviceHandlers[event];
    if (handler != nullptr) {
        ++state().handlerDepth;
        handler(BLEDevice());
        --state().handlerDepth;
    }
}

int storeValue(BLELocalCharacteristic* local, const uint8_t* value, int length) {
    local->valueLength = length < local->valueSize ? length : local->valueSize;
    if (local->valueLength > 0) {
        memcpy(local->value, value, static_cast<size_t>(local->valueLength));
    }
    if (local->fixedLength) {
        local->valueLength = local->valueSize;
    }
    return local->valueLength;
}

}  // namespace

// A friend of BLECharacteristic: the handler gets a characteristic sharing the stored value.
void deliverWrite(BLELocalCharacteristic* local) {
    if (local->handlers[BLEWritten] != nullptr) {
        ++state().handlerDepth;
        local->handlers[BLEWritten](BLEDevice(), BLECharacteristic(local));
        --state().handlerDepth;
    }
}

namespace {

// HCI events waiting in the transport, handled the way HCIClass::handleEventPkt and ATTClass do.
void processEvents() {
    State& s = state();
    if (s.handlerDepth > 0) {
        return;  // the re-entrant call has been counted; do not nest handlers
    }
    while (!s.events.empty()) {
        Event event = s.events.front();
        s.events.pop_front();
        switch (event.type) {
            case Event::ConnectionComplete:
                s.peer = true;
                callDeviceHandler(BLEConnected);
                break;
            case Event::DisconnectionComplete:
                if (s.peer) {  // not after BLE.disconnect(): it already emptied the peer table
                    s.peer = false;
                    callDeviceHandler(BLEDisconnected);
                }
                if (s.gapAdvertising && s.autoResume) {
                    s.advertisingEnabled = true;  // HCI.leSetAdvertiseEnable(0x01)
                }
                break;
            case Event::AttWrite:
                if (s.peer) {
                    BLELocalCharacteristic* local = event.characteristic;
                    storeValue(local, event.value.data(), static_cast<int>(event.value.size()));
                    deliverWrite(local);
                }
                break;
        }
    }
}

// Every call that sends an HCI command waits for its completion by polling HCI, which also
// dispatches any pending events (HCIClass::sendCommand).
void hciCommand() {
    if (state().handlerDepth > 0) {
        ++state().reentrant;
    }
    processEvents();
}

BLELocalCharacteristic* findCharacteristic(const char* uuid) {
    const Gatt& gatt = state().gatt;
    for (int i = 0; i < gatt.characteristicCount; ++i) {
        if (strcmp(gatt.characteristics[i]->uuid, uuid) == 0) {
            return gatt.characteristics[i];
        }
    }
    return nullptr;
}

}  // namespace

// --- BLECharacteristic -------------------------------------------------------------------------

BLECharacteristic::BLECharacteristic(const char* uuid, uint16_t permissions, int valueSize,
                                     bool fixedLength) {
    if (poolUsed == POOL_SIZE || valueSize > BLELocalCharacteristic::MAX_VALUE || valueSize < 0) {
        misuse("too many characteristics or value too large for the stand-in");
    }
    _local = &pool[poolUsed++];
    _local->uuid = uuid;
    _local->properties = static_cast<uint8_t>(permissions & 0xFF);
    _local->valueSize = valueSize;
    _local->fixedLength = fixedLength;
    _local->valueLength = 0;
}

const uint8_t* BLECharacteristic::value() const { return _local->value; }
int BLECharacteristic::valueLength() const { return _local->valueLength; }

int BLECharacteristic::writeValue(const uint8_t value[], int length, bool /*withResponse*/) {
    if (takeFailure(fake_ble::Fail::WriteValue)) {
        return 0;
    }
    return storeValue(_local, value, length);
}

void BLECharacteristic::setEventHandler(int event, BLECharacteristicEventHandler eventHandler) {
    if (event >= 0 && event < BLECharacteristicEventLast) {
        _local->handlers[event] = eventHandler;
    }
}

// --- BLEService --------------------------------------------------------------------------------

BLEService::BLEService(const char* uuid)
    : _uuid(uuid), _characteristics(), _characteristicCount(0) {}

void BLEService::addCharacteristic(BLECharacteristic& characteristic) {
    if (_characteristicCount == MAX_CHARACTERISTICS) {
        misuse("too many characteristics in one service");
    }
    _characteristics[_characteristicCount++] = characteristic._local;
}

// --- BLEAdvertisingData (same rules as BLEAdvertisingData.cpp) ----------------------------------

namespace {
const int AD_FIELD_OVERHEAD = 2;
const uint8_t FIELD_FLAGS = 0x01;
const uint8_t FIELD_SHORT_LOCAL_NAME = 0x08;
const uint8_t FIELD_COMPLETE_LOCAL_NAME = 0x09;
}  // namespace

BLEAdvertisingData::BLEAdvertisingData()
    : _data(),
      _dataLength(0),
      _remainingLength(MAX_AD_DATA_LENGTH),
      _rawData(nullptr),
      _rawDataLength(0),
      _flags(0),
      _hasFlags(false),
      _localName(nullptr) {}

bool BLEAdvertisingData::updateRemainingLength(int oldFieldLength, int newFieldLength) {
    const int updated = _remainingLength + (oldFieldLength - newFieldLength);
    if (updated < 0) {
        return false;
    }
    _remainingLength = updated;
    return true;
}

bool BLEAdvertisingData::setRawData(const uint8_t* data, int length) {
    if (takeFailure(fake_ble::Fail::SetRawData) || length > MAX_AD_DATA_LENGTH) {
        return false;
    }
    _rawData = data;
    _rawDataLength = length;
    return true;
}

bool BLEAdvertisingData::setLocalName(const char* localName) {
    const int previous = (_localName != nullptr && strlen(_localName) > 0)
                             ? static_cast<int>(strlen(_localName)) + AD_FIELD_OVERHEAD
                             : 0;
    if (!updateRemainingLength(previous, static_cast<int>(strlen(localName)) + AD_FIELD_OVERHEAD)) {
        return false;
    }
    _localName = localName;
    return true;
}

bool BLEAdvertisingData::setFlags(uint8_t flags) {
    const int previous = _hasFlags ? 1 + AD_FIELD_OVERHEAD : 0;
    if (!updateRemainingLength(previous, 1 + AD_FIELD_OVERHEAD)) {
        return false;
    }
    _hasFlags = true;
    _flags = flags;
    return true;
}

bool BLEAdvertisingData::addField(uint8_t type, const uint8_t* data, int length) {
    if (length + AD_FIELD_OVERHEAD > MAX_AD_DATA_LENGTH - _dataLength) {
        return false;
    }
    _data[_dataLength++] = static_cast<uint8_t>(length + 1);
    _data[_dataLength++] = type;
    memcpy(&_data[_dataLength], data, static_cast<size_t>(length));
    _dataLength += length;
    return true;
}

bool BLEAdvertisingData::updateData() {
    _dataLength = 0;
    // Raw data, when present, is the whole packet.
    if (_rawData != nullptr && _rawDataLength > 0) {
        if (_rawDataLength > MAX_AD_DATA_LENGTH) {
            return false;
        }
        memcpy(_data, _rawData, static_cast<size_t>(_rawDataLength));
        _dataLength = _rawDataLength;
        return true;
    }
    bool success = true;
    if (_hasFlags) {
        success &= addField(FIELD_FLAGS, &_flags, 1);
    }
    // (Service UUID, manufacturer and service data: not used by the sketch, not modelled.)
    if (_localName != nullptr) {
        const int length = static_cast<int>(strlen(_localName));
        const int room = MAX_AD_DATA_LENGTH - AD_FIELD_OVERHEAD;
        const uint8_t* name = reinterpret_cast<const uint8_t*>(_localName);
        success &= length > room ? addField(FIELD_SHORT_LOCAL_NAME, name, room)
                                 : addField(FIELD_COMPLETE_LOCAL_NAME, name, length);
    }
    return success;
}

// --- BLELocalDevice ----------------------------------------------------------------------------

BLELocalDevice::BLELocalDevice() {
    _advertisingData.setFlags(BLEFlagsGeneralDiscoverable | BLEFlagsBREDRNotSupported);
}

int BLELocalDevice::begin() {
    if (takeFailure(fake_ble::Fail::Begin)) {
        return 0;
    }
    state().begun = true;
    return 1;
}

void BLELocalDevice::poll() {
    ++state().polls;
    processEvents();
}

bool BLELocalDevice::connected() const {
    processEvents();  // ArduinoBLE's connected() polls HCI too
    return state().peer;
}

bool BLELocalDevice::disconnect() {
    hciCommand();
    State& s = state();
    if (!s.peer) {
        return false;
    }
    // ATTClass::disconnect(): sends HCI Disconnect and empties the peer table at once, so the
    // Disconnection Complete event that follows finds no peer and calls no handler.
    s.peer = false;
    s.link = false;
    Event event = {Event::DisconnectionComplete, nullptr, {}};
    s.events.push_back(event);
    return true;
}

bool BLELocalDevice::setLocalName(const char* localName) {
    if (takeFailure(fake_ble::Fail::SetLocalName)) {
        return false;
    }
    return _scanResponseData.setLocalName(localName);
}

void BLELocalDevice::setAdvertisingData(BLEAdvertisingData& advertisingData) {
    _advertisingData = advertisingData;
    if (!_advertisingData.hasFlags()) {
        _advertisingData.setFlags(BLEFlagsGeneralDiscoverable | BLEFlagsBREDRNotSupported);
    }
}

void BLELocalDevice::setDeviceName(const char* deviceName) { state().deviceName = deviceName; }

void BLELocalDevice::addService(BLEService& service) {
    // GATTClass::addService builds the attribute table now: characteristics added later are
    // not served.
    Gatt& gatt = state().gatt;
    if (gatt.serviceCount == Gatt::MAX_SERVICES) {
        misuse("too many services");
    }
    gatt.serviceUuids[gatt.serviceCount] = service._uuid;
    for (int i = 0; i < service._characteristicCount; ++i) {
        gatt.serviceOf[gatt.characteristicCount] = gatt.serviceCount;
        gatt.characteristics[gatt.characteristicCount++] = service._characteristics[i];
    }
    ++gatt.serviceCount;
}

int BLELocalDevice::advertise() {
    hciCommand();
    State& s = state();
    if (!s.begun) {
        misuse("advertise() before begin()");
    }
    // GAPClass::advertise: stop, set parameters and data, enable. A failed step leaves it off.
    s.advertisingEnabled = false;
    _advertisingData.updateData();
    _scanResponseData.updateData();
    if (takeFailure(fake_ble::Fail::Advertise)) {
        s.gapAdvertising = false;
        return 0;
    }
    s.advertisingOnAir.assign(_advertisingData.data(),
                              _advertisingData.data() + _advertisingData.dataLength());
    s.scanResponseOnAir.assign(_scanResponseData.data(),
                               _scanResponseData.data() + _scanResponseData.dataLength());
    s.advertisingEnabled = true;
    s.gapAdvertising = true;
    ++s.advertiseCalls;
    return 1;
}

void BLELocalDevice::stopAdvertise() {
    hciCommand();
    state().gapAdvertising = false;
    state().advertisingEnabled = false;
}

void BLELocalDevice::setEventHandler(BLEDeviceEvent event, BLEDeviceEventHandler eventHandler) {
    if (event == BLEConnected || event == BLEDisconnected) {
        state().deviceHandlers[event] = eventHandler;
    }
}

static BLELocalDevice localDevice;
BLELocalDevice& BLE = localDevice;

// --- test controls (fakes.h) -------------------------------------------------------------------

namespace fake_ble {

void failNext(Fail call, int times) { failures[static_cast<int>(call)] += times; }

bool advertising() { return state().advertisingEnabled; }
std::vector<uint8_t> advertisingData() { return state().advertisingOnAir; }
std::vector<uint8_t> scanResponseData() { return state().scanResponseOnAir; }
const char* deviceName() { return state().deviceName; }
int advertiseCalls() { return state().advertiseCalls; }

bool connect() {
    State& s = state();
    if (!s.advertisingEnabled || s.link) {
        return false;  // nothing to connect to: a silent beacon cannot be found
    }
    s.link = true;
    s.advertisingEnabled = false;  // a connectable advertising set ends with the connection
    Event event = {Event::ConnectionComplete, nullptr, {}};
    s.events.push_back(event);
    return true;
}

bool disconnect() {
    State& s = state();
    if (!s.link) {
        return false;
    }
    s.link = false;
    Event event = {Event::DisconnectionComplete, nullptr, {}};
    s.events.push_back(event);
    return true;
}

bool linked() { return state().link; }

bool serves(const char* serviceUuid, const char* characteristicUuid) {
    const Gatt& gatt = state().gatt;
    for (int i = 0; i < gatt.characteristicCount; ++i) {
        if (strcmp(gatt.characteristics[i]->uuid, characteristicUuid) == 0 &&
            strcmp(gatt.serviceUuids[gatt.serviceOf[i]], serviceUuid) == 0) {
            return true;
        }
    }
    return false;
}

std::vector<GattEntry> gattTable() {
    const Gatt& gatt = state().gatt;
    std::vector<GattEntry> table;
    for (int i = 0; i < gatt.characteristicCount; ++i) {
        const BLELocalCharacteristic* local = gatt.characteristics[i];
        GattEntry entry = {gatt.serviceUuids[gatt.serviceOf[i]], local->uuid, local->properties,
                           std::vector<uint8_t>(local->value, local->value + local->valueLength)};
        table.push_back(entry);
    }
    return table;
}

void setAutoResume(bool enabled) { state().autoResume = enabled; }

std::vector<uint8_t> read(const char* uuid) {
    BLELocalCharacteristic* local = findCharacteristic(uuid);
    if (!state().peer || local == nullptr || (local->properties & BLERead) == 0) {
        return std::vector<uint8_t>();
    }
    return std::vector<uint8_t>(local->value, local->value + local->valueLength);
}

bool write(const char* uuid, const std::vector<uint8_t>& value) {
    BLELocalCharacteristic* local = findCharacteristic(uuid);
    if (!state().link || local == nullptr || (local->properties & BLEWrite) == 0) {
        return false;
    }
    Event event = {Event::AttWrite, local, value};
    state().events.push_back(event);
    return true;
}

int reentrantCalls() { return state().reentrant; }
int pollCalls() { return state().polls; }

}  // namespace fake_ble
