"""The printer's state and chamber light (the Bambu LAN link in appliance/printer/)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from appliance import schema
from appliance.printer.errors import NO_PRINTER, PrinterError
from appliance.printer.service import PrinterService
from appliance.web.context import services
from appliance.web.guard import token_allowed
from appliance.web.openapi import document_errors

blueprint = Blueprint("printer", __name__)


def _printer() -> PrinterService:
    """The printer service of a printer that is set up."""
    printer = _started()
    if not printer.configured:
        raise PrinterError(NO_PRINTER, code="no_printer", status=404)
    return printer


def _started() -> PrinterService:
    """The printer service, set up or not (the set-up routes make it so)."""
    printer = services().printer
    if printer is None:
        msg = "the appliance is still starting; try again in a moment"
        raise PrinterError(msg, code="starting", status=503)
    return printer


@blueprint.get("/api/printer")
@token_allowed
@document_errors(404)
@validate_response(schema.PrinterState)
async def printer_state() -> dict[str, Any]:
    """The printer's state: the same body browsers receive as ``printer2v`` on every change."""
    return _printer().payload()


@blueprint.post("/api/printer/light")
@validate_request(schema.LightRequest)
@document_errors(404, 409, 503)
@validate_response(schema.LightAnswer, 200)
@validate_response(schema.LightAnswer, 202)
async def printer_light(data: schema.LightRequest) -> tuple[dict[str, Any], int]:
    """Switch the chamber light (MQTT ``ledctrl``). 200 when the printer confirmed it, 202 when
    it was sent but not answered; 409 when the printer refused it (Developer Mode off)."""
    confirmed = await _printer().set_light(data.on)
    if confirmed:
        return {"success": True, "lightOn": data.on, "message": "the printer switched the light"}, 200
    return {"success": True, "lightOn": None,
            "message": "sent; the printer did not confirm it (see the light on the dashboard)"}, 202


@blueprint.put("/api/printer/access-code")
@validate_request(schema.AccessCodeRequest)
@document_errors(503)
@validate_response(schema.PrinterAnswer)
async def printer_access_code(data: schema.AccessCodeRequest) -> dict[str, Any]:
    """Save the LAN access code (write-only: no route ever answers it) and reconnect with it."""
    printer = _started()
    await printer.set_access_code(data.accessCode)
    message = ("saved; the printer link reconnects with it now" if printer.configured else
               "saved; enter the printer's address and serial too")
    return {"success": True, "message": message}


@blueprint.put("/api/printer/address")
@validate_request(schema.AddressRequest)
@document_errors(503)
@validate_response(schema.PrinterAnswer)
async def printer_address(data: schema.AddressRequest) -> dict[str, Any]:
    """Save the printer's address and serial (the Settings page) and connect to it now."""
    printer = _started()
    await printer.set_address(data.host, data.serial)
    message = (f"saved; connecting to {printer.host}" if printer.configured
               else "saved; no printer is linked now")
    return {"success": True, "message": message}


@blueprint.post("/api/printer/trust")
@validate_request(schema.TrustRequest)
@document_errors(404, 409)
@validate_response(schema.PrinterAnswer)
async def printer_trust(data: schema.TrustRequest) -> dict[str, Any]:
    """Trust the certificate the printer now shows (after it was refused as changed)."""
    _printer().trust.trust_offered(data.fingerprint)
    return {"success": True, "pinned": data.fingerprint,
            "message": "the new certificate is trusted; the printer reconnects within a minute"}
