"""Schemathesis against the live OpenAPI document (issue 14): generated requests, with a trader's and the admin's key,
get no 5xx and answers that conform to the document."""
from __future__ import annotations

import json
import uuid

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_headers_conformance, response_schema_conformance, status_code_conformance,
)
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.live import Cluster

pytestmark = pytest.mark.integration

EXAMPLES = 30  # per operation and key: bounded, so the run stays under a minute


@pytest.fixture(scope="module")
def fuzzed(kafka_bootstrap, tmp_path_factory):
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("fuzz"), f"fz-{uuid.uuid4().hex[:8]}", venue=True,
                      extra_env={"ATLAS_RATE_LIMITS": json.dumps({name: {"per_second": 10_000, "burst": 10_000} for name in
                                                                  ("address", "reads", "orders", "amends", "admin")})})
    cluster.start_worker()
    yield cluster
    cluster.stop()


# No 5xx, and answers as the document says: statuses it declares, content types and bodies matching their schemas.
# Left out: that every schema-valid request is accepted (the API also checks what a schema cannot say: a LIMIT
# order needs a price, a symbol must be configured) and that every invalid one is refused with a 4xx.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("who", ["trader-20", "admin"])
def test_generated_requests_get_no_server_error_and_conforming_answers(fuzzed, who, mode):
    schema = schemathesis.openapi.from_url(f"{fuzzed.workers[0].url}/api/v1/openapi.json")
    checked = 0
    for loaded in schema.get_all_operations():
        operation = loaded.ok()
        if operation.path == "/api/v1/stream":
            continue  # a WebSocket: its 426 without a handshake is tested in test_web_hardening

        @BOUNDED
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case) -> None:
            case.call_and_validate(headers={"X-API-Key": fuzzed.keys[who]}, checks=CHECKS)

        try:
            call()
        except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        checked += 1
    assert checked >= (20 if mode is GenerationMode.POSITIVE else 8), checked  # the operations that were called
