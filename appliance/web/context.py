"""What the web layer reaches through the app: the services create_app built."""

from __future__ import annotations

from typing import Final

from quart import current_app

from appliance.services import Services

# The key create_app stores the running services under in the Quart app's extensions.
EXTENSION_KEY: Final = "appliance"


def services() -> Services:
    ctx: Services = current_app.extensions[EXTENSION_KEY]
    return ctx
