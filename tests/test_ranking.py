"""Pure ranking functions: term combination, RRF, duplicate collapsing, cursors, facets, FTS quoting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iconosearch.index.ranking import (
    Collapsed,
    Cursor,
    DuplicateGroups,
    century_label,
    collapse_duplicates,
    combine_terms,
    count_facets,
    decode_cursor,
    encode_cursor,
    fts_match_expression,
    query_key,
    reciprocal_rank_fusion,
    sort_ranked,
)
from iconosearch.query import EmptyQueryError, Filters, InvalidCursorError, Query, QueryError, Term


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_single_term_is_its_unit_vector() -> None:
    q = combine_terms([np.array([3.0, 4.0, 0.0])], [2.5])
    assert np.allclose(q, [0.6, 0.8, 0.0])


def test_terms_are_normalised_before_weighting() -> None:
    # A long vector must not dominate a short one: equal weights give the bisector.
    q = combine_terms([np.array([100.0, 0.0]), np.array([0.0, 0.01])], [1.0, 1.0])
    assert np.allclose(q, unit([1.0, 1.0]))


def test_negative_weight_pushes_away() -> None:
    a, b = unit([1.0, 0.2, 0.0]), unit([0.0, 1.0, 0.0])
    plain = combine_terms([a], [1.0])
    minus = combine_terms([a, b], [1.0, -0.5])
    assert float(minus @ b) < float(plain @ b)
    assert float(minus @ b) < 0


def test_all_negative_or_zero_weights_refused() -> None:
    with pytest.raises(QueryError, match="positive weight"):
        combine_terms([unit([1, 0]), unit([0, 1])], [-1.0, 0.0])


def test_cancelling_terms_refused() -> None:
    with pytest.raises(QueryError, match="cancel"):
        combine_terms([unit([1, 0]), unit([1, 0])], [1.0, -1.0])


def test_no_terms_and_nan_refused() -> None:
    with pytest.raises(EmptyQueryError):
        combine_terms([], [])
    with pytest.raises(QueryError, match="finite"):
        combine_terms([unit([1, 0])], [float("nan")])


def test_rrf_prefers_items_in_both_lists_and_breaks_ties_by_id() -> None:
    fused = reciprocal_rank_fusion([[5, 1, 2], [9, 1, 7]])
    assert fused[0][0] == 1
    # 5 and 9 both rank first in one list: equal scores, smaller id first.
    assert [i for i, _ in fused[1:3]] == [5, 9]


def test_sort_ranked_is_deterministic() -> None:
    assert sort_ranked([3, 1, 2], [0.5, 0.5, 0.9]) == [(2, 0.9), (1, 0.5), (3, 0.5)]


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 8)), min_size=0, max_size=60, unique_by=lambda t: t[0]
    ),
    st.integers(0, 60),
)
def test_collapsing_a_prefix_is_a_prefix_of_collapsing_all(pairs: list[tuple[int, int]], cut: int) -> None:
    ids = np.array([rid for rid, _ in pairs], dtype=np.int64)
    scores = np.array([1.0 - i / 100 for i in range(len(pairs))])
    groups = DuplicateGroups.of({rid: 100 + g for rid, g in pairs if g})
    whole = collapse_duplicates(ids, scores, groups)
    part = collapse_duplicates(ids[:cut], scores[:cut], groups)
    assert whole[: len(part)] == part
    assert len({c.group for c in whole}) == len(whole)
    assert whole == _collapse_by_loop(list(zip(ids.tolist(), scores.tolist(), strict=True)), groups)


def _collapse_by_loop(ranked: list[tuple[int, float]], groups: DuplicateGroups) -> list[Collapsed]:
    """The obvious per-hit loop the numpy collapsing must agree with."""
    group_of = dict(zip(groups.ids.tolist(), groups.groups.tolist(), strict=True))
    seen: set[int] = set()
    out = []
    for rid, score in ranked:
        group = group_of.get(rid, rid)
        if group not in seen:
            seen.add(group)
            out.append(Collapsed(rid, score, group))
    return out


def test_collapse_keeps_best_of_each_group() -> None:
    groups = DuplicateGroups.of({1: 10, 3: 10})
    out = collapse_duplicates(np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7]), groups, limit=5)
    assert [(c.id, c.group) for c in out] == [(1, 10), (2, 2)]
    assert collapse_duplicates(np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7]), groups, limit=1)[0].id == 1
    assert groups.shared([10, 2, 10]) == [10]


def test_cursor_round_trip_and_validation() -> None:
    c = Cursor("20260101T000000Z", 48, "abc123")
    text = encode_cursor(c)
    assert decode_cursor(text, expected_key="abc123") == c
    with pytest.raises(InvalidCursorError, match="different query"):
        decode_cursor(text, expected_key="other")
    for bad in ("", "!!!", "bm90IGpzb24", encode_cursor(Cursor("v", 0, "k"))[:-3] + "A", "x" * 600):
        with pytest.raises(InvalidCursorError):
            decode_cursor(bad, expected_key="k")


def test_negative_offset_cursor_refused() -> None:
    import base64

    text = base64.urlsafe_b64encode(b'["v",-5,"k"]').decode().rstrip("=")
    with pytest.raises(InvalidCursorError):
        decode_cursor(text, expected_key="k")


def test_query_key_ignores_page_but_not_ranking_inputs() -> None:
    base = Query(terms=(Term("text", "ship"),), k=10)
    assert query_key(base) == query_key(Query(terms=(Term("text", "ship"),), k=50, cursor="x"))
    assert query_key(base) != query_key(Query(terms=(Term("text", "ship", 0.5),)))
    assert query_key(base) != query_key(
        Query(terms=(Term("text", "ship"),), filters=Filters(collections=("a",)))
    )
    assert query_key(base) != query_key(Query(terms=(Term("text", "ship"),), keywords="x"))


def test_count_facets() -> None:
    rows = [
        ("maps", "BL", "open", 19, "2"),
        ("maps", None, "open", 19, None),
        ("prints", "BL", "unknown", None, "2"),
    ]
    facets = count_facets(rows)
    assert facets["suggested_division"] == {"2": 2}  # records without suggestions are not counted
    assert facets["collection"] == {"maps": 2, "prints": 1}
    assert facets["institution"] == {"BL": 2, "unknown": 1}
    assert facets["rights"] == {"open": 2, "unknown": 1}
    assert facets["century"] == {"19th c.": 2, "unknown": 1}
    assert list(facets["collection"]) == ["maps", "prints"]


@pytest.mark.parametrize(
    ("century", "label"),
    [
        (1, "1st c."),
        (2, "2nd c."),
        (3, "3rd c."),
        (11, "11th c."),
        (21, "21st c."),
        (-1, "1st c. BCE"),
        (None, "unknown"),
    ],
)
def test_century_label(century: int | None, label: str) -> None:
    assert century_label(century) == label


def test_fts_expression_quotes_user_input() -> None:
    assert fts_match_expression("Rembrandt van Rijn") == '"Rembrandt" "van" "Rijn"'
    assert fts_match_expression('foo" OR "bar') == '"foo" "OR" "bar"'
    assert fts_match_expression("amster*") == '"amster"*'
    assert fts_match_expression("NEAR(a b)") == '"NEAR" "a" "b"'
    with pytest.raises(EmptyQueryError):
        fts_match_expression("  *** ")
