// A tiny test harness: TEST registers a function, CHECK/CHECK_EQ stop the test at the first
// failure. test_main.cpp runs every test in its own process (fork), so each one boots a fresh
// "board" (the sketch's globals start over) and a crash or sanitizer report fails only that test.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace harness {

typedef void (*TestFunction)();

struct Registrar {
    Registrar(const char* name, TestFunction function);
};

[[noreturn]] void fail(const char* file, int line, const std::string& message);

std::string show(const std::string& value);
std::string show(const char* value);
std::string show(bool value);
std::string show(long long value);
std::string show(unsigned long long value);
std::string show(const std::vector<uint8_t>& bytes);  // hex
typedef unsigned long long ull;
inline std::string show(int value) { return show(static_cast<long long>(value)); }
inline std::string show(long value) { return show(static_cast<long long>(value)); }
inline std::string show(unsigned value) { return show(static_cast<ull>(value)); }
inline std::string show(unsigned long value) { return show(static_cast<ull>(value)); }
inline std::string show(uint8_t value) { return show(static_cast<ull>(value)); }
inline std::string show(uint16_t value) { return show(static_cast<ull>(value)); }

}  // namespace harness

#define TEST(name)                                                   \
    static void name();                                              \
    static const harness::Registrar name##_registrar(#name, &name);  \
    static void name()

#define CHECK(condition)                                                    \
    do {                                                                    \
        if (!(condition)) {                                                 \
            harness::fail(__FILE__, __LINE__, "CHECK(" #condition ") failed"); \
        }                                                                   \
    } while (0)

#define CHECK_EQ(actual, expected)                                                           \
    do {                                                                                     \
        const auto& actual_ = (actual);                                                      \
        const auto& expected_ = (expected);                                                  \
        if (!(actual_ == expected_)) {                                                       \
            harness::fail(__FILE__, __LINE__,                                                \
                          std::string(#actual " == " #expected "\n      actual:   ") +     \
                              harness::show(actual_) + "\n      expected: " +            \
                              harness::show(expected_));                                 \
        }                                                                                    \
    } while (0)
