"""The one base error. Every message says what to do about it."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of the appliance's own errors."""


class RequestError(ApplianceError):
    """A request the appliance cannot follow: ``code`` and ``status`` are what the API answers."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ConfigError(ApplianceError):
    """A setting has a bad value; the message names the key and the accepted values."""


class StoreError(ApplianceError):
    """The database cannot be used as it is."""


class StorageFullError(StoreError):
    """The SD card is full: the change was not saved; what is stored is intact."""


class RadioError(ApplianceError):
    """The Bluetooth radio failed an operation."""
