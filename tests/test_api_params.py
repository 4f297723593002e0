"""The search query string is parsed by one model (``api.params``), not by FastAPI per parameter: the
same values, the same FastAPI-shaped errors, and the same parameters declared in OpenAPI."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from iconosearch.api.params import SEARCH_OPENAPI, SEARCH_PARAM_NAMES, SearchParams, search_params
from iconosearch.api.problems import ProblemError


def _parse(query_string: str) -> SearchParams:
    scope = {"type": "http", "method": "GET", "path": "/api/search", "query_string": query_string.encode()}
    return asyncio.run(search_params(Request(scope)))


def test_values_lists_and_aliases() -> None:
    p = _parse(
        "q=+ships+&like=3F2A9C0D41B7E615&not=sea&not=sky&rights=open&rights=unknown&k=7"
        "&year_from=1600&collapse=false&facets=1&suggested_division=2&fields=links&qlang=DE&mode=vector"
    )
    q = p.query
    assert [(t.kind, t.value, t.weight) for t in q.terms] == [
        ("text", "ships", 1.0),
        ("item", "3f2a9c0d41b7e615", 1.0),
        ("text", "sea", -0.5),
        ("text", "sky", -0.5),
    ]
    assert (q.k, q.collapse_duplicates, q.language, q.mode) == (7, False, "de", "vector")
    assert q.filters.rights == ("open", "unknown") and q.filters.year_from == 1600
    assert q.filters.suggested_divisions == ("2",)
    assert p.facets is True and p.fields == ("links",)
    # Defaults, as FastAPI gave them.
    d = _parse("q=x")
    assert (d.query.k, d.query.collapse_duplicates, d.query.sort, d.facets) == (24, True, "relevance", False)


@pytest.mark.parametrize(
    ("query_string", "location"),
    [
        ("q=x&k=0", ("query", "k")),
        ("q=x&k=many", ("query", "k")),
        ("like=zzz", ("query", "like", 0)),
        ("q=x&rights=free", ("query", "rights", 0)),
        ("q=x&not=a&year_to=99999", ("query", "year_to")),
    ],
)
def test_invalid_values_are_located_in_the_query(query_string: str, location: tuple) -> None:
    with pytest.raises(RequestValidationError) as caught:
        _parse(query_string)
    assert [e["loc"] for e in caught.value.errors()] == [location]


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ProblemError) as caught:
        _parse("q=x&not_=y&colour=red")
    assert caught.value.code == "unknown-parameter"
    assert "colour, not_" in caught.value.detail


def test_openapi_declares_every_parameter() -> None:
    params = {p["name"]: p for p in SEARCH_OPENAPI["parameters"]}
    assert set(params) == SEARCH_PARAM_NAMES
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    arrays = {
        n for n, p in params.items() if any(a.get("type") == "array" for a in p["schema"].get("anyOf", ()))
    }
    assert {"like", "unlike", "not", "rights", "fields", "suggested_division"} <= arrays
    assert "q" not in arrays and params["k"]["schema"]["minimum"] == 1
