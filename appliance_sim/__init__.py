"""The simulation beside the appliance: stand-ins for hardware, never imported by appliance/."""
