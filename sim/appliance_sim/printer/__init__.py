"""A stand-in Bambu Lab printer for tests and `make run PRINTER=standin`.

Debian's mosquitto plays the printer's MQTT broker (a TLS listener on loopback and a password
file with ``bblp`` and the access code), ``player`` plays the printer on it, ``camera`` serves
the port-6000 JPEG stream. Everything is a stand-in: no part of it talks to a real printer.
"""
