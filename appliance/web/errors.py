"""Every error leaves the app as {"error": code, "message": text} with the right status."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from quart import Quart, Request, Response, jsonify, request
from quart_schema import RequestSchemaValidationError, ResponseSchemaValidationError
from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed

from appliance.auth.accounts import AccountError
from appliance.auth.policy import PolicyError
from appliance.errors import RequestError, StorageFullError
from appliance.presence.service import PairingError
from appliance.schema import ErrorBody, describe, not_an_object

_LOGGER = logging.getLogger(__name__)

_STATUS_FOR_CODE = {
    "unknown_device": 404, "not_paired": 404, "not_found": 404, "exists": 409,
    "invalid_name": 422, "weak_password": 422,
}


class BadJson(BadRequest):
    """A JSON body that cannot be read: a 400 that says why."""


class JsonRequest(Request):
    """Quart's request, whose get_json lets two kinds of bad body escape as 500s: bytes that are
    not UTF-8 (UTF-16, say) are decoded before its ``except ValueError``, and deep nesting
    raises RecursionError, which is no ValueError."""

    async def get_json(self, force: bool = False, silent: bool = False,
                       cache: bool = True) -> Any:
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError:
            msg = "the body is not UTF-8: send JSON encoded as UTF-8"
            raise BadJson(msg) from None
        except RecursionError:
            msg = "the body nests too deep to be a request of this API"
            raise BadJson(msg) from None


def json_error(status: int, code: str, message: str, **headers: str) -> Response:
    response = jsonify(ErrorBody(error=code, message=message).model_dump())
    response.status_code = status
    response.headers.update(headers)
    return response


def register(app: Quart) -> None:
    app.request_class = JsonRequest
    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(exc: RequestSchemaValidationError) -> Response:
        inner: Any = exc.validation_error
        if isinstance(inner, ValidationError):
            if not_an_object(inner):
                return json_error(400, "bad_json", "the body must be a JSON object")
            return json_error(422, "invalid", describe(inner))
        if isinstance(inner, TypeError):
            return json_error(400, "bad_json", "the body must be a JSON object")
        return json_error(422, "invalid", str(inner))

    @app.errorhandler(ResponseSchemaValidationError)
    async def response_error(exc: ResponseSchemaValidationError) -> Response:
        # A bug: the app built an answer that breaks its own documented shape. Never sent.
        _LOGGER.error("Response of %s %s breaks its model: %s", request.method, request.path,
                      exc.args[0] if exc.args else exc)
        return json_error(500, "internal", "internal error; the appliance log has the details")

    @app.errorhandler(PairingError)
    async def pairing_error(exc: PairingError) -> Response:
        return json_error(_STATUS_FOR_CODE.get(exc.code, 409), exc.code, str(exc))

    @app.errorhandler(RequestError)
    async def request_error(exc: RequestError) -> Response:
        return json_error(exc.status, exc.code, str(exc))

    @app.errorhandler(StorageFullError)
    async def storage_full(exc: StorageFullError) -> Response:
        # 503: the server cannot store it now and will again; Retry-After as the reserve returns.
        return json_error(503, "storage_full", str(exc), **{"Retry-After": "60"})

    @app.errorhandler(AccountError)
    @app.errorhandler(PolicyError)
    async def account_error(exc: AccountError | PolicyError) -> Response:
        return json_error(_STATUS_FOR_CODE.get(exc.code, 400), exc.code, str(exc))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        if isinstance(exc, BadJson):
            return json_error(400, "bad_json", exc.description or "the body is not valid JSON")
        if status == 400 and request.is_json:  # quart's get_json failed to parse the body
            return json_error(400, "bad_json", "the body is not valid JSON")
        headers = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: 405 has Allow
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return json_error(status, code, exc.description or exc.name or "error", **headers)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        _LOGGER.exception("Unhandled error")
        return json_error(500, "internal", "internal error; the appliance log has the details")
