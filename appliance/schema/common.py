"""What every part of the API shares: errors, acks, validation messages, the answer base."""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationError, WithJsonSchema


def describe(exc: ValidationError) -> str:
    """One line for people: ``field: what is wrong; ...``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(loc) for loc in error["loc"]) or "body"
        text = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {text}")
    return "; ".join(parts)


def not_an_object(exc: ValidationError) -> bool:
    """The input was not a JSON object at all (a list, a string, nothing)."""
    return any(error["type"] in ("model_type", "dict_type") and not error["loc"]
               for error in exc.errors())


class Answer(BaseModel):
    """A response model whose defaulted fields are always sent, so the document marks them required."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ErrorBody(BaseModel):
    """An error: a stable code for programs, a sentence for people that says what to do."""

    error: str
    message: str


class Ack(BaseModel):
    """The answer to a publisher's Socket.IO event: {ok: true} or {ok: false, error, message}."""

    ok: bool
    error: str | None = None
    message: str | None = None


class Done(Answer):
    """A change that has nothing to return but that it happened (the reference's shape)."""

    success: bool = True
    message: str



# The characters str.strip() removes (Python's whitespace), spelled out for the OpenAPI document's
# patterns: a JSON Schema `\s` is ECMAScript's, which differs (U+0085, U+001C-001F, U+FEFF).
BLANKS: Final = (r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a"
                 r"\u2028\u2029\u202f\u205f\u3000")

# Refused in one line of text (a status, a user's name, a job): control characters (C0, DEL, C1:
# Unicode category Cc), the line and paragraph separators (Zl, Zp), and the bidi controls that can
# make a name read backwards on the dashboard (U+202E and friends, of Cf). One class, for the check
# and for the OpenAPI document's pattern (so generated clients know it too).
_REFUSED_CHARS: Final = (r"\u0000-\u001f\u007f-\u009f\u2028\u2029\u061c\u200e\u200f"
                         r"\u202a-\u202e\u2066-\u2069")
ONE_LINE_PATTERN: Final = (rf"^[^{_REFUSED_CHARS}]*[^{BLANKS}{_REFUSED_CHARS}]"
                           rf"[^{_REFUSED_CHARS}]*$")
_REFUSED: Final = re.compile(f"[{_REFUSED_CHARS}]")


def one_line(text: str) -> str:
    """An AfterValidator: the text is one line of printable characters."""
    if _REFUSED.search(text):
        msg = "must be one line of printable text"
        raise ValueError(msg)
    return text


def one_line_schema(max_length: int) -> WithJsonSchema:
    """What the OpenAPI document says of a stripped, non-blank, one-line text field."""
    return WithJsonSchema({"type": "string", "minLength": 1, "maxLength": max_length,
                           "pattern": ONE_LINE_PATTERN})
