"""The OpenAPI contract matches the code: Schemathesis against the real app, bounded examples.

0.1 failed it in several places: the ``like``/``unlike`` id pattern was not in the schema, ``POST
{}`` answered 400 although ``terms`` is optional, 404 and 422 were documented where they cannot
happen (and not where they can), and ``OPTIONS`` answered 405 because of the static mount.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from iconosearch.api.app import create_app
from iconosearch.config import ServerConfig, Settings
from iconosearch.index.engine import SearchEngine
from tests.helpers.index_data import HashEmbedder, build, make_items

SEMANTIC_RULES = frozenset(
    {
        "empty-query",  # "at least one of q, like, unlike, keywords" spans optional parameters; weights 0
        "invalid-query",  # ... and one of them must pull (a positive weight), not only push
        "invalid-filter",  # year_from ≤ year_to spans two parameters
        "url-not-allowed",  # queries by URL are a configuration choice (off by default)
        "limit-exceeded",  # k and paging depth are bounded by the configured limits, not the schema
        "unknown-collection",  # collections are data, not an enum of the schema
        "unknown-item",  # so are item ids
        "unknown-subject",  # and the notations of a vocabulary
        "invalid-cursor",  # cursors are opaque tokens the server made
        "invalid-image",  # image bytes are checked by decoding them
        "invalid-region",  # a detail must lie inside its image, whose size is data
    }
)
"""Problem codes that schema-valid input may still get (4xx), for rules OpenAPI cannot state: what is
indexed, what is configured, what bytes decode. Any other 4xx to schema-valid input fails."""

MAX_EXAMPLES = 20
"""Per operation: enough to reach every documented status, small enough for ``make test``."""


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> schemathesis.BaseSchema:
    data_dir: Path = tmp_path_factory.mktemp("contract")
    build(data_dir, make_items(80))
    embedder = HashEmbedder()
    engine = SearchEngine.open(data_dir, embedder_loader=lambda spec: embedder)
    app = create_app(
        Settings(data_dir=data_dir, server=ServerConfig(api_keys=["k"])), engine=engine, reload_interval_s=0
    )
    client = TestClient(app)
    client.__enter__()  # run the lifespan (warm-up) for the whole module
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _accepts_positive_data(case: schemathesis.Case, response: schemathesis.Response) -> None:
    """Schemathesis' ``positive_data_acceptance``, less :data:`SEMANTIC_RULES`."""
    if case.meta is not None and "negative" in str(case.meta.generation.mode).lower():
        return
    if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 404, 409, 429):
        body = response.json()
        assert body.get("code") in SEMANTIC_RULES, (
            f"schema-valid request rejected: {case.method} {case.formatted_path} {case.query} "
            f"{case.body!r} -> {response.status_code} {body}"
        )


def test_api_conforms_to_its_openapi(api_schema: schemathesis.BaseSchema) -> None:
    """Every operation, every check Schemathesis has by default; all failures reported together."""
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            _accepts_positive_data(case, response)

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)


def test_options_and_wrong_methods_name_the_real_methods(api_schema: schemathesis.BaseSchema) -> None:
    """0.1's static mount answered every other method with 405 ``Allow: GET, HEAD``, API paths too."""
    app = api_schema.app
    with TestClient(app) as client:
        r = client.options("/api/search")
        assert r.status_code == 204 and set(r.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
        r = client.put("/api/search")
        assert r.status_code == 405 and "POST" in r.headers["allow"]
        assert r.headers["content-type"].startswith("application/problem+json")
        assert client.options("/").status_code == 204
