// Host implementation of Arduino.h: a clock the tests move, pins that remember, a Serial port
// backed by two strings.
#include <string>

#include "Arduino.h"
#include "fakes.h"

namespace {

uint32_t nowMs = 0;
unsigned long baud = 0;
std::string serialIn;
std::string serialOut;

const int PIN_COUNT = 64;
PinMode modes[PIN_COUNT];
PinStatus levels[PIN_COUNT];
unsigned changes[PIN_COUNT];

}  // namespace

FakeSerial Serial;

unsigned long millis() { return nowMs; }

void pinMode(pin_size_t pinNumber, PinMode mode) {
    if (pinNumber < PIN_COUNT) {
        modes[pinNumber] = mode;
    }
}

void digitalWrite(pin_size_t pinNumber, PinStatus status) {
    if (pinNumber < PIN_COUNT) {
        if (levels[pinNumber] != status) {
            ++changes[pinNumber];
        }
        levels[pinNumber] = status;
    }
}

void FakeSerial::begin(unsigned long baudrate) { baud = baudrate; }

int FakeSerial::available() { return static_cast<int>(serialIn.size()); }

int FakeSerial::read() {
    if (serialIn.empty()) {
        return -1;
    }
    const unsigned char c = static_cast<unsigned char>(serialIn[0]);
    serialIn.erase(0, 1);
    return c;
}

size_t FakeSerial::print(const char* text) {
    serialOut += text;
    return std::string(text).size();
}

size_t FakeSerial::println(const char* text) { return print(text) + println(); }

size_t FakeSerial::println() {
    serialOut += "\r\n";  // Arduino's Print::println ends lines with CR LF
    return 2;
}

namespace fake_arduino {

void setMillis(uint32_t ms) { nowMs = ms; }
void advanceMillis(uint32_t ms) { nowMs += ms; }  // wraps like the board's counter

unsigned long serialBaud() { return baud; }
void serialInput(const std::string& text) { serialIn += text; }

std::string takeSerialOutput() {
    std::string out;
    out.swap(serialOut);
    return out;
}

PinMode pinModeOf(pin_size_t pin) { return pin < PIN_COUNT ? modes[pin] : INPUT; }
PinStatus pinLevel(pin_size_t pin) { return pin < PIN_COUNT ? levels[pin] : LOW; }
unsigned pinChanges(pin_size_t pin) { return pin < PIN_COUNT ? changes[pin] : 0; }

}  // namespace fake_arduino
