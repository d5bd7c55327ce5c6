// Host stand-in for the Arduino core of the Nano 33 BLE (ArduinoCore-mbed on ArduinoCore-API),
// covering exactly what beacon.ino uses. Types and signatures follow ArduinoCore-API so code that
// builds here builds there (e.g. digitalWrite takes a PinStatus, not an int). Tests drive it
// through fakes.h.
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef uint8_t pin_size_t;
typedef enum { LOW = 0, HIGH = 1, CHANGE = 2, FALLING = 3, RISING = 4 } PinStatus;
typedef enum { INPUT = 0x0, OUTPUT = 0x1, INPUT_PULLUP = 0x2, INPUT_PULLDOWN = 0x3 } PinMode;

// The Nano 33 BLE's yellow LED (D13), lit when HIGH.
#define LED_BUILTIN (13u)

// 32-bit on the board: it wraps after 49.7 days, and so does this one. Advanced by the tests.
unsigned long millis();
void pinMode(pin_size_t pinNumber, PinMode pinMode);
void digitalWrite(pin_size_t pinNumber, PinStatus status);

// The USB CDC port. Tests feed it input and collect its output (fakes.h).
class FakeSerial {
public:
    void begin(unsigned long baudrate);
    int available();
    int read();
    size_t print(const char* text);
    size_t println(const char* text);
    size_t println();
};

extern FakeSerial Serial;
