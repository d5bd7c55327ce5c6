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


class Provider(OpenAPIProvider):
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
        if mime_types:
            body = {"required": True, "content": {
                mime: {"schema": {"type": "string", "format": "binary"}} for mime in mime_types}}
            for operations in paths.values():
                for operation in operations.values():
                    operation["requestBody"] = body
        return paths, components
