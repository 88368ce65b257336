"""Schemathesis fuzzes every operation of the live server's OpenAPI schema: no input may cause a 5xx.

Driven through Schemathesis' strategies directly (its pytest plugin does not support pytest 9).
"""

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.web.conftest import serve_process  # noqa: E402


@pytest.fixture(scope="module")
def base():
    with serve_process({"ASTROCLASSIFY_RATE_LIMIT_PER_MINUTE": "0"}) as url:
        yield url


def _fuzz(op, failures: list[str]) -> None:
    @given(case=op.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        response = case.call(timeout=60)
        if response.status_code >= 500:
            body = str(case.body)[:80]
            failures.append(
                f"{op.method.upper()} {op.path}: {response.status_code} ({case.path_parameters} {case.query} {body})"
            )

    run()


@pytest.mark.slow
def test_no_operation_answers_5xx(base):
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    failures: list[str] = []
    for op in operations:
        _fuzz(op, failures)
    assert not failures, "\n".join(failures[:10])
