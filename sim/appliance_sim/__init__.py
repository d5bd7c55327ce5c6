"""The appliance's simulation: virtual beacons on a virtual radio, and stand-ins for what is out of reach.

Never imported by ``appliance``: the app finds the ``virtual`` radio through the ``appliance.radios``
entry point this package registers. Installed by ``make setup`` for ``make run``, the tests and the
rigs; the image carries neither this package nor bumble.
"""
