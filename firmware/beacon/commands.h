// The USB serial line protocol: collecting bytes into lines and parsing a line into a command.
// Plain C++ with fixed buffers (no String, no heap): it behaves the same on the host and the board.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

namespace fw {

// Collects serial bytes into lines. CR, LF and CRLF all end a line, so any terminal works.
// The grammar (verbs, limits, reply prefixes) is protocol.h, generated from protocol.py.
class LineReader {
public:
    // Longer than any valid command; the rest is dropped.
    static const size_t MAX_LINE = protocol::MAX_COMMAND_LEN;

    LineReader();

    // Feeds one byte. Returns true when it completed a line; line() then holds it until the next
    // call. Empty lines are not reported (a CRLF is one line end, not two).
    bool feed(char c);
    const char* line() const { return buffer_; }
    // The line just completed was longer than MAX_LINE and has been cut short.
    bool overflowed() const { return overflowed_; }

private:
    char buffer_[MAX_LINE + 1];
    size_t length_;
    bool overflowed_;
    bool complete_;  // buffer_ holds a completed line: start a new one on the next byte
};

enum class CommandKind : uint8_t {
    Empty,    // blank line: no reply
    Invalid,  // reply REPLY_ERR + error
    Help,
    Version,
    GetId,
    SetId,
    Status,
    AdvOn,
    AdvOff,
};

struct Command {
    CommandKind kind;
    uint16_t id;        // SetId only
    const char* error;  // Invalid only: the reason, without the REPLY_ERR prefix
};

// Parses one line: words separated by spaces or tabs, ASCII case-insensitive.
Command parseCommand(const char* line);

}  // namespace fw
