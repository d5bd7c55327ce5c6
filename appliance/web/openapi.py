"""The OpenAPI document: quart-schema's, plus what it cannot say by itself.

quart-schema documents JSON and form bodies from their models; a frame is raw bytes, so a view
marks its body with ``@binary_body`` and the provider below writes it into the document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from quart_schema import document_response
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from appliance import schema
from appliance.web.guard import TOKEN_ATTR, is_public

F = TypeVar("F", bound=Callable[..., Any])
BINARY_BODY_ATTR: Final = "_appliance_binary_body"
BINARY_ANSWER_ATTR: Final = "_appliance_binary_answer"


def binary_body(*mime_types: str) -> Callable[[F], F]:
    """The request body is raw bytes of one of these types."""

    def decorator(func: F) -> F:
        setattr(func, BINARY_BODY_ATTR, mime_types)
        return func

    return decorator


def binary_answer(*mime_types: str) -> Callable[[F], F]:
    """The answer (200, and 206 for a part) is a file of one of these types."""

    def decorator(func: F) -> F:
        setattr(func, BINARY_ANSWER_ATTR, mime_types)
        return func

    return decorator


def document_errors(*statuses: int) -> Callable[[F], F]:
    """These statuses answer with the API's error body, {"error": code, "message": text}."""

    def decorator(func: F) -> F:
        for status in statuses:
            func = document_response(schema.ErrorBody, status)(func)
        return func

    return decorator


# How a client proves who it is (README: Security): the login cookie, or a publisher token.
SECURITY_SCHEMES: Final = {
    "session": {"type": "apiKey", "in": "cookie", "name": "appliance_session",
                "description": "set by POST /api/session (or the login page)"},
    "token": {"type": "http", "scheme": "bearer",
              "description": "a publisher token from `appliance token add NAME`"},
}
ERROR_REF: Final = {"description": "the API's error body",
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/ErrorBody"}}}}


class Provider(OpenAPIProvider):
    """Adds what every operation shares, from the rules the guard and the error handlers apply:
    who may call it, that a body is required, and the errors any route can answer."""

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        answers = getattr(view, BINARY_ANSWER_ATTR, ())
        if answers:
            content = {mime: {"schema": {"type": "string", "format": "binary"}} for mime in answers}
            for operations in paths.values():
                for operation in operations.values():
                    operation["responses"][200] = {"description": "the file", "content": content}
                    if "video/mp4" in answers:
                        operation["responses"][206] = {"description": "the range asked for",
                                                         "content": content}
        mime_types = getattr(view, BINARY_BODY_ATTR, ())
        open_to_all = is_public(rule.endpoint, view)
        security: list[dict[str, list[str]]] = []
        if not open_to_all:
            security = [{"session": []}, {"token": []}] if getattr(view, TOKEN_ATTR, False) \
                else [{"session": []}]
        for operations in paths.values():
            for method, operation in operations.items():
                if mime_types:
                    operation["requestBody"] = {"content": {
                        mime: {"schema": {"type": "string", "format": "binary"}}
                        for mime in mime_types}}
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True
                operation["security"] = security
                responses = operation.setdefault("responses", {})
                errors = ([] if open_to_all else [401]) + (
                    [400, 422] if "requestBody" in operation else []) + (
                    [404] if rule.arguments else []) + (
                    [503] if method != "get" else [])  # a write on a full SD card: storage_full
                for status in errors:  # quart-schema keys responses by int
                    if status not in responses and str(status) not in responses:
                        responses[status] = ERROR_REF
        return paths, components

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        document["components"].setdefault("schemas", {}).setdefault(
            "ErrorBody", schema.ErrorBody.model_json_schema())
        return document
