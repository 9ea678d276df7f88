"""Registers every API blueprint, the health endpoints and the OpenAPI extras."""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask

API_PREFIX = "/api/v1"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}

#: Error statuses any authenticated operation may answer.
_COMMON_ERRORS = {
    "400": "Malformed request (not JSON, wrong content type)",
    "401": "Not authenticated",
    "403": "Authenticated but not allowed (role, CSRF)",
    "404": "Not found, or not visible to this user",
    "409": "The record's state does not allow this",
    "422": "Some fields are not valid; each is named in error.fields",
    "429": "Too many requests",
}


def register_api(app: APIFlask) -> None:
    """Attach blueprints and OpenAPI configuration to ``app``."""
    app.config["HTTP_ERROR_SCHEMA"] = ERROR_SCHEMA
    app.config["VALIDATION_ERROR_SCHEMA"] = ERROR_SCHEMA
    app.config["SECURITY_SCHEMES"] = {
        "BearerAuth": {"type": "http", "scheme": "bearer"},
        "SessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
    }
    app.config["BASE_RESPONSE_SCHEMA"] = None

    from oncall.accounts.api import bp as accounts_bp
    from oncall.alerts.api import bp as alerts_bp
    from oncall.calls.api import bp as calls_bp
    from oncall.circles.api import bp as circles_bp
    from oncall.core.health import bp as health_bp
    from oncall.notify.api import bp as notify_bp
    from oncall.rota.api import bp as rota_bp
    from oncall.visits.api import bp as visits_bp

    for bp in (accounts_bp, circles_bp, rota_bp, calls_bp, visits_bp, alerts_bp, notify_bp):
        app.register_blueprint(bp, url_prefix=API_PREFIX)
    app.register_blueprint(health_bp)

    from oncall.console.views import bp as console_bp

    app.register_blueprint(console_bp)

    @app.spec_processor
    def _add_error_responses(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
        if isinstance(spec, str):
            return spec
        ref = {"$ref": "#/components/schemas/Error"}
        spec.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for path, item in spec.get("paths", {}).items():
            if not path.startswith(API_PREFIX):
                continue
            for method, operation in item.items():
                if method not in {"get", "post", "put", "patch", "delete"}:
                    continue
                responses = operation.setdefault("responses", {})
                for status, description in _COMMON_ERRORS.items():
                    responses.setdefault(status, {"description": description})
                    responses[status]["content"] = {"application/json": {"schema": ref}}
        return spec
