"""The Bambu Lab LAN link: printer state over MQTT/TLS and camera frames over TLS port 6000.

Knows nothing of ``web/``: the service hands frames to the relay as bytes and state changes to
its subscribers.
"""
