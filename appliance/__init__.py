"""Raspberry Pi appliance: BLE presence beacons, timelapse relay and a live dashboard."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("appliance")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
