"""Parsing of `iconosearch search --filter` values (pure; iconosearch.query.parse_filters)."""

from __future__ import annotations

import pytest

from iconosearch.query import Filters, InvalidFilterError, parse_filters


def test_filters_parse() -> None:
    f = parse_filters(
        [
            "collection=maps",
            "collection=prints",
            "provider=British Library",
            "rights=open",
            "lang=nl",
            "has_caption=no",
        ]
    )
    assert f == Filters(
        collections=("maps", "prints"),
        providers=("British Library",),
        rights=("open",),
        languages=("nl",),
        has_caption=False,
    )
    assert parse_filters([]) == Filters()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1650", (1650, 1650)),
        ("1600-1700", (1600, 1700)),
        ("1600..1700", (1600, 1700)),
        ("1600/1700", (1600, 1700)),
        ("1600-", (1600, None)),
        ("-1700", (-1700, -1700)),
        ("..1700", (None, 1700)),
        ("-50..50", (-50, 50)),
    ],
)
def test_year_ranges(value: str, expected: tuple[int | None, int | None]) -> None:
    f = parse_filters([f"year={value}"])
    assert (f.year_from, f.year_to) == expected


@pytest.mark.parametrize(
    "bad", ["year=abc", "year=", "colour=red", "rights=free", "has_caption=maybe", "collection", "from=x"]
)
def test_bad_filters(bad: str) -> None:
    with pytest.raises(InvalidFilterError):
        parse_filters([bad])
