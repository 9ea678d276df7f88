"""The DomainError hierarchy and the one JSON error shape.

Every error leaves the API as::

    {"error": {"code": "...", "message": "...", "fields": {"field": ["reason"]}}}

Domain code raises a :class:`DomainError` subclass; :func:`register` maps them,
APIFlask's validation errors and Werkzeug's HTTP errors to that shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from apiflask import APIFlask, HTTPError
from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

FieldErrors = dict[str, list[str]]


class DomainError(Exception):
    """Base of the errors a use case may raise; carries an HTTP status and a code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields: FieldErrors = {k: list(v) for k, v in (fields or {}).items()}
        self.headers = dict(headers or {})


class ValidationFailed(DomainError):
    """Input is well-formed JSON but some fields are wrong; each is named."""

    status = 422
    code = "validation_failed"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    """Absent, or not visible to this user (another circle, another doctor's visit)."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    """The request is valid but the record's state does not allow it."""

    status = 409
    code = "conflict"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"


class Validator:
    """Gathers field errors so that a use case reports all of them at once."""

    def __init__(self) -> None:
        self.errors: FieldErrors = {}

    def add(self, field: str, reason: str) -> None:
        self.errors.setdefault(field, []).append(reason)

    def check(self, ok: bool, field: str, reason: str) -> bool:
        if not ok:
            self.add(field, reason)
        return ok

    def raise_if_any(self, message: str = "Some fields are not valid.") -> None:
        if self.errors:
            raise ValidationFailed(message, fields=self.errors)


def error_body(code: str, message: str, fields: Mapping[str, list[str]] | None = None) -> dict:
    """The JSON body of every error response."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = dict(fields)
    return {"error": body}


def _flatten(detail: Any, prefix: str = "") -> FieldErrors:
    """Turn marshmallow's nested messages into ``{"a.b": ["reason"]}``."""
    out: FieldErrors = {}
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out[name] = list(value)
            else:
                out.update(_flatten(value, name))
    elif isinstance(detail, list):
        out[prefix or "_schema"] = [str(v) for v in detail]
    elif detail is not None:
        out[prefix or "_schema"] = [str(detail)]
    return out


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
}


def _is_api_request() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/health")


def _json_error(
    status: int,
    code: str,
    message: str,
    fields: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    response = jsonify(error_body(code, message, fields))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register(app: APIFlask) -> None:
    """Install the error handlers on the application."""

    @app.error_processor
    def _apiflask_error(error: HTTPError) -> tuple[dict, int, Mapping[str, str]]:
        # APIFlask's input validation: detail is {"json": {...}, "query": {...}}.
        fields: FieldErrors = {}
        detail = error.detail or {}
        if isinstance(detail, Mapping):
            for location, messages in detail.items():
                if location in {"json", "query", "path", "form", "headers", "files", "cookies"}:
                    fields.update(_flatten(messages))
                else:
                    fields.update(_flatten({location: messages}))
        status = error.status_code
        code = _HTTP_CODES.get(status, "error")
        message = error.message or "Request failed."
        if status == 422:
            message = "Some fields are not valid."
        elif status == 400 and not fields:
            message = "The request body is not valid JSON."
        headers = {str(k): str(v) for k, v in dict(error.headers or {}).items()}
        return error_body(code, message, fields), status, headers

    @app.errorhandler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        return _json_error(error.status, error.code, error.message, error.fields, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response | HTTPException:
        status = error.code or 500
        if not _is_api_request():
            return error
        headers = {}
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return _json_error(
            status,
            _HTTP_CODES.get(status, "error"),
            error.description or "Request failed.",
            headers=headers,
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # The route's template, not the path: a path may hold a caller's number.
        route = request.url_rule.rule if request.url_rule else "<no route>"
        logger.error("Unhandled error on %s %s", request.method, route, exc_info=error)
        return _json_error(500, "internal_error", "An unexpected error occurred.")
