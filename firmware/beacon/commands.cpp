#include "commands.h"

namespace fw {

LineReader::LineReader() : length_(0), overflowed_(false), complete_(false) {
    buffer_[0] = '\0';
}

bool LineReader::feed(char c) {
    if (complete_) {
        length_ = 0;
        overflowed_ = false;
        complete_ = false;
        buffer_[0] = '\0';
    }
    if (c == '\r' || c == '\n') {
        if (length_ == 0 && !overflowed_) {
            return false;  // blank line, or the LF of a CRLF
        }
        buffer_[length_] = '\0';
        complete_ = true;
        return true;
    }
    if (length_ < MAX_LINE) {
        buffer_[length_++] = c;
    } else {
        overflowed_ = true;
    }
    return false;
}

namespace {

const size_t MAX_WORDS = 3;

bool isSpace(char c) { return c == ' ' || c == '\t'; }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

struct Word {
    const char* text;
    size_t length;
};

// Does the word equal `expected` (lower case, as protocol.h spells the verbs)?
bool is(const Word& word, const char* expected) {
    size_t i = 0;
    for (; i < word.length; ++i) {
        if (expected[i] == '\0' || lower(word.text[i]) != expected[i]) {
            return false;
        }
    }
    return expected[i] == '\0';
}

// Decimal 1..65535, digits only.
bool parseId(const Word& word, uint16_t* id) {
    if (word.length == 0 || word.length > 5) {
        return false;
    }
    uint32_t value = 0;
    for (size_t i = 0; i < word.length; ++i) {
        const char c = word.text[i];
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<uint32_t>(c - '0');
    }
    if (value < 1 || value > 0xFFFF) {
        return false;
    }
    *id = static_cast<uint16_t>(value);
    return true;
}

Command make(CommandKind kind) {
    Command command = {kind, 0, nullptr};
    return command;
}

Command invalid(const char* error) {
    Command command = {CommandKind::Invalid, 0, error};
    return command;
}

}  // namespace

Command parseCommand(const char* line) {
    Word words[MAX_WORDS];
    size_t count = 0;
    const char* p = line;
    while (*p != '\0') {
        while (isSpace(*p)) {
            ++p;
        }
        if (*p == '\0') {
            break;
        }
        if (count == MAX_WORDS) {
            return invalid("too many words (try help)");
        }
        const char* start = p;
        while (*p != '\0' && !isSpace(*p)) {
            ++p;
        }
        words[count].text = start;
        words[count].length = static_cast<size_t>(p - start);
        ++count;
    }

    if (count == 0) {
        return make(CommandKind::Empty);
    }
    const Word& name = words[0];
    if (is(name, protocol::VERB_HELP) && count == 1) {
        return make(CommandKind::Help);
    }
    if (is(name, protocol::VERB_VERSION) && count == 1) {
        return make(CommandKind::Version);
    }
    if (is(name, protocol::VERB_STATUS) && count == 1) {
        return make(CommandKind::Status);
    }
    if (is(name, protocol::VERB_ID)) {
        if (count == 1) {
            return make(CommandKind::GetId);
        }
        Command command = make(CommandKind::SetId);
        if (count == 2 && parseId(words[1], &command.id)) {
            return command;
        }
        return invalid("usage: id [1-65535]");
    }
    if (is(name, protocol::VERB_ADV)) {
        if (count == 2 && is(words[1], protocol::ADV_ON)) {
            return make(CommandKind::AdvOn);
        }
        if (count == 2 && is(words[1], protocol::ADV_OFF)) {
            return make(CommandKind::AdvOff);
        }
        return invalid("usage: adv on|off");
    }
    if (is(name, protocol::VERB_HELP) || is(name, protocol::VERB_VERSION) ||
        is(name, protocol::VERB_STATUS)) {
        return invalid("takes no arguments");
    }
    return invalid("unknown command (try help)");
}

}  // namespace fw
