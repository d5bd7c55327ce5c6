"""The rules for user names, token names and passwords, written once.

The CLI, the web API (through the pydantic types in ``appliance.schema``), the accounts module
and the first-boot file all check through these functions, so a rule and its message cannot
drift between them.
"""

from __future__ import annotations

import re
from typing import Final

from appliance.errors import ApplianceError

MIN_PASSWORD_LEN: Final = 8
MAX_PASSWORD_LEN: Final = 1024  # scrypt over megabytes is a cheap denial of service
MAX_NAME_LEN: Final = 64
# User and token names: safe in a URL path, a log line and a shell command without quoting.
# Written so that Python, JSON Schema and an HTML pattern attribute (without ^ $) all read it.
NAME_PATTERN: Final = rf"^[A-Za-z0-9_.@\-]{{1,{MAX_NAME_LEN}}}$"
# The first-boot admin is also a Linux login (SSH, sudo): useradd's portable set, which is a
# subset of NAME_PATTERN, so the same name works for the appliance account.
LOGIN_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,31}$"

_NAME_RE: Final = re.compile(NAME_PATTERN)
_LOGIN_RE: Final = re.compile(LOGIN_PATTERN)


class PolicyError(ApplianceError, ValueError):
    """A name or password breaks a rule. A ValueError too, so pydantic reports it as invalid input."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        msg = f"the password must be at least {MIN_PASSWORD_LEN} characters"
        raise PolicyError(msg, code="weak_password")
    if len(password) > MAX_PASSWORD_LEN:
        msg = f"the password must be at most {MAX_PASSWORD_LEN} characters"
        raise PolicyError(msg, code="weak_password")
    return password


def check_name(name: str, what: str = "user name") -> str:
    if not _NAME_RE.match(name):
        msg = f"a {what} is 1-{MAX_NAME_LEN} letters, digits or _ . @ - (got {name!r})"
        raise PolicyError(msg, code="invalid_name")
    return name


def check_token_name(name: str) -> str:
    return check_name(name, "token name")


def check_login_name(name: str) -> str:
    """The first-boot admin: an appliance user and a Linux login."""
    if not _LOGIN_RE.match(name):
        msg = "the admin user is 1-32 lower-case letters, digits, '_' or '-', starting with a letter"
        raise PolicyError(msg, code="invalid_name")
    return check_name(name)
