"""MQTT: satellite scanners and Home Assistant (README, "More rooms, Home Assistant").

client.py connects to the broker and keeps reconnecting; sightings.py is the wire format of a
scanner's batches (pure); scanner.py is the scanner role; hub.py takes the scanners' sightings
on the main appliance; broker.py writes the embedded mosquitto's password file and ACL;
homeassistant.py publishes Home Assistant's discovery configs and states.
"""
