// Host stand-in for ArduinoBLE 2.x, covering exactly the API beacon.ino uses, with the library's
// behaviour where the sketch depends on it (src/ references are to ArduinoBLE 2.0.1):
//  - BLEAdvertisingData keeps the caller's pointers and only serialises them in BLE.advertise()
//    (BLEAdvertisingData.cpp updateData); raw data, when set, replaces the whole packet, flags too.
//  - BLE.setLocalName() puts the name in the scan response, not the advertising data.
//  - setters return bool and fail when the data does not fit.
//  - events (connect, disconnect, characteristic written) are delivered from inside BLE.poll()
//    and the other calls that poll HCI, never asynchronously.
//  - the controller stops advertising when a central connects; when a link ends, advertising is
//    re-enabled if GAP still counts itself advertising, i.e. unless stopAdvertise() was called
//    (HCI.cpp, EVT_DISCONN_COMPLETE).
//  - BLE.disconnect() drops the link without a BLEDisconnected event (ATT.cpp disconnect()).
//  - a characteristic write is cut to the value size; fixed-length values keep their full size.
// The radio itself (a central, the air) is driven by the tests through fakes.h.
#pragma once

#include <Arduino.h>

#define MAX_AD_DATA_LENGTH (31)

enum BLEFlags {
    BLEFlagsLimitedDiscoverable = 0x01,
    BLEFlagsGeneralDiscoverable = 0x02,
    BLEFlagsBREDRNotSupported = 0x04
};

enum BLEProperty {
    BLEBroadcast = 0x01,
    BLERead = 0x02,
    BLEWriteWithoutResponse = 0x04,
    BLEWrite = 0x08,
    BLENotify = 0x10,
    BLEIndicate = 0x20,
};

enum BLEDeviceEvent {
    BLEConnected = 0,
    BLEDisconnected = 1,
    BLEDiscovered = 2,
    BLEDeviceLastEvent
};

enum BLECharacteristicEvent {
    BLESubscribed = 0,
    BLEUnsubscribed = 1,
    BLEWritten = 3,
    BLEUpdated = BLEWritten,
    BLECharacteristicEventLast
};

// A remote device. The sketch never looks inside (ArduinoBLE's has address(), rssi(), ...).
class BLEDevice {
public:
    BLEDevice() {}
};

typedef void (*BLEDeviceEventHandler)(BLEDevice device);

class BLECharacteristic;
typedef void (*BLECharacteristicEventHandler)(BLEDevice device, BLECharacteristic characteristic);

struct BLELocalCharacteristic;  // the stand-in's storage behind a characteristic

class BLECharacteristic {
public:
    BLECharacteristic(const char* uuid, uint16_t permissions, int valueSize,
                      bool fixedLength = false);
    // Copies share the value, like ArduinoBLE's (reference-counted) ones.
    BLECharacteristic(const BLECharacteristic& other) = default;
    BLECharacteristic& operator=(const BLECharacteristic& other) = delete;

    const uint8_t* value() const;
    int valueLength() const;
    // Returns the stored length (ArduinoBLE: BLELocalCharacteristic::writeValue).
    int writeValue(const uint8_t value[], int length, bool withResponse = true);
    void setEventHandler(int event, BLECharacteristicEventHandler eventHandler);

private:
    friend class BLEService;
    friend void deliverWrite(BLELocalCharacteristic* local);  // fake_ble.cpp: BLEWritten events
    explicit BLECharacteristic(BLELocalCharacteristic* local) : _local(local) {}
    BLELocalCharacteristic* _local;
};

class BLEService {
public:
    static const int MAX_CHARACTERISTICS = 8;  // a limit of the stand-in only

    BLEService(const char* uuid);
    void addCharacteristic(BLECharacteristic& characteristic);

private:
    friend class BLELocalDevice;
    const char* _uuid;
    BLELocalCharacteristic* _characteristics[MAX_CHARACTERISTICS];
    int _characteristicCount;
};

class BLEAdvertisingData {
public:
    BLEAdvertisingData();
    // Keeps the pointer; the bytes are copied in BLE.advertise(). At most 31 bytes.
    bool setRawData(const uint8_t* data, int length);

private:
    friend class BLELocalDevice;
    bool setLocalName(const char* localName);
    bool setFlags(uint8_t flags);
    bool hasFlags() const { return _hasFlags; }
    bool updateRemainingLength(int oldFieldLength, int newFieldLength);
    bool updateData();
    bool addField(uint8_t type, const uint8_t* data, int length);
    const uint8_t* data() const { return _data; }
    int dataLength() const { return _dataLength; }

    uint8_t _data[MAX_AD_DATA_LENGTH];
    int _dataLength;
    int _remainingLength;
    const uint8_t* _rawData;
    int _rawDataLength;
    uint8_t _flags;
    bool _hasFlags;
    const char* _localName;
};

class BLELocalDevice {
public:
    BLELocalDevice();

    int begin();
    void poll();
    bool connected() const;
    bool disconnect();

    bool setLocalName(const char* localName);
    void setAdvertisingData(BLEAdvertisingData& advertisingData);
    void setDeviceName(const char* deviceName);
    void addService(BLEService& service);

    int advertise();
    void stopAdvertise();

    void setEventHandler(BLEDeviceEvent event, BLEDeviceEventHandler eventHandler);

private:
    BLEAdvertisingData _advertisingData;
    BLEAdvertisingData _scanResponseData;
};

extern BLELocalDevice& BLE;
