"""The served OpenAPI document holds: no input makes a server error, and every
response (status, content type, body) matches the document.

Schemathesis generates valid and invalid requests for every operation of the
document, at most ``MAX_EXAMPLES`` per operation, and sends them as a circle's
admin and as its dispatcher against the real application on PostgreSQL.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests import factories as f

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
#: Examples per operation; ``ONCALL_CONTRACT_EXAMPLES`` raises it for a deeper run.
MAX_EXAMPLES = int(os.environ.get("ONCALL_CONTRACT_EXAMPLES", "25"))


def _run_operation(operation: Any, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.parametrize("role", ["admin", "dispatcher"])
def test_every_operation_conforms(app, world, role: str, monkeypatch) -> None:
    # The live stream would never end on its own: let it open, then close at once.
    monkeypatch.setitem(app.config, "STREAM_MAX_SECONDS", 0)
    f.make_police_contact(world.circle)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _run_operation(operation, world.headers[role])
        except Exception as exc:  # gather every operation's failure into one report
            failures.append(f"{operation.label}: {exc}")
    assert operations > 0
    assert not failures, "\n\n".join(failures)
