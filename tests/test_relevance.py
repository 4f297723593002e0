"""Relevance bands, totals and date sorting through the real API on a real index; calibration maths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from iconosearch.evaluation.calibration import split_scores, thresholds_from_scores
from iconosearch.query import Query, Term
from iconosearch.relevance import Calibration, Thresholds, load_calibration, query_kind, stored_path
from tests.helpers.demo_index import DemoIndex, calibrate_demo_index, shared_demo_index


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    return shared_demo_index(tmp_path_factory)


@pytest.fixture(scope="module")
def client(demo: DemoIndex) -> Iterator[TestClient]:
    calibrate_demo_index(demo)
    app = create_app(Settings(data_dir=demo.data_dir), reload_interval_s=0)
    with TestClient(app, base_url=demo.base_url) as c:
        yield c


# ---------------------------------------------------------------- calibration maths


def test_thresholds_are_quantiles_of_unrelated_scores() -> None:
    negative = np.linspace(0.0, 0.999, 1000)
    positive = np.array([0.2, 0.5, 0.95, 0.995])
    t = thresholds_from_scores(positive, negative)
    assert 0.98 < t.strong < 0.99 and 0.89 < t.possible < 0.90
    assert t.strong_recall == 0.25  # only 0.995 is above ~0.989
    assert t.possible_recall == 0.5  # 0.95 and 0.995 are above ~0.899


def test_split_scores_takes_the_diagonal_as_true_matches() -> None:
    sim = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.0], [0.1, 0.4, 0.7]])
    pos, neg = split_scores(sim)
    assert pos.tolist() == [0.9, 0.8, 0.7]
    assert sorted(neg.tolist()) == [0.0, 0.1, 0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError):
        split_scores(np.zeros((2, 3)))


def test_bands_and_query_kinds() -> None:
    t = Thresholds(strong=0.5, possible=0.3, strong_recall=0.2, possible_recall=0.6)
    assert [t.band(s) for s in (0.9, 0.4, 0.1)] == ["strong", "possible", "weak"]
    assert query_kind(Query(terms=(Term("text", "a ship"),))) == "text"
    assert query_kind(Query(terms=(Term("item", "0" * 16), Term("text", "sea", -0.5)))) == "image"
    assert query_kind(Query(terms=(Term("text", "a ship"), Term("item", "0" * 16)))) is None
    assert query_kind(Query(terms=(Term("text", "a ship"),), keywords="ship")) is None


def test_the_shipped_default_model_is_calibrated() -> None:
    from iconosearch.models.embedder import load_embedder

    fingerprint = load_embedder("iconosearch-lite").fingerprint
    cal = load_calibration("iconosearch-lite", fingerprint, None)
    assert cal is not None, (
        "src/iconosearch/models/lite/relevance.json does not match the shipped weights: run "
        "'iconosearch models calibrate demo/collection --out src/iconosearch/models/lite/relevance.json'"
    )
    assert cal.text.strong > cal.text.possible and cal.image.strong > cal.image.possible


def test_calibration_is_used_only_for_the_weights_it_was_measured_on(tmp_path: Path) -> None:
    t = Thresholds(strong=0.5, possible=0.3, strong_recall=0.2, possible_recall=0.6)
    cal = Calibration("ViT-B-32/x", "f" * 64, "test set", 40, 40, t, t)
    cal.save(stored_path(tmp_path, "f" * 64))
    assert load_calibration("ViT-B-32/x", "f" * 64, tmp_path) == cal
    assert load_calibration("ViT-B-32/x", "e" * 64, tmp_path) is None
    stored_path(tmp_path, "e" * 64).write_text(json.dumps({**cal.to_dict(), "model_fingerprint": "d" * 64}))
    assert load_calibration("ViT-B-32/x", "e" * 64, tmp_path) is None, "a stale file is ignored"


# ---------------------------------------------------------------- through the API


def test_results_read_like_a_catalogue(client: TestClient, demo: DemoIndex) -> None:
    body = client.get(
        "/api/search", params={"q": "a map of the world", "k": 10, "fields": "content_state"}
    ).json()
    first = body["results"][0]
    record = next(r for r in demo.records if r.id == first["id"])
    assert first["title"] == record.manifest_label
    assert first["creator"] == record.metadata[0].value
    assert first["rights_class"] in {"open", "restricted", "unknown"}
    assert (
        body["templates"]["viewer"].replace("{content_state}", first["content_state"])
        == f"{demo.base_url}/viewer/?iiif-content={first['content_state']}"
    )
    classes = {
        r["rights_class"] for r in client.get("/api/search", params={"q": "x", "k": 40}).json()["results"]
    }
    assert classes == {"open", "restricted", "unknown"}


def test_relevance_bands_follow_the_calibrated_thresholds(client: TestClient, demo: DemoIndex) -> None:
    rel = client.get("/api/relevance").json()
    assert rel["calibrated"] is True and rel["model"] == "iconosearch-lite"
    assert rel["measured_on"].startswith("test images"), "the deployment's own calibration wins"
    assert rel["text"]["strong"] > rel["text"]["possible"]
    assert rel["image"]["strong"] > rel["image"]["possible"]
    # An item's own title finds it as a better than weak match (when the test index holds the demo
    # collection's watercolour of a cranberry; else the drawn red circle).
    query = next(
        (t for r in demo.records for t in r.manifest_label.get("en", []) if "cranberry" in t.lower()),
        "a red circle",
    )
    # mode=vector: a title's words also match its catalogue text, and a fused (hybrid) ranking has no
    # calibrated bands.
    body = client.get("/api/search", params={"q": query, "k": 40, "mode": "vector"}).json()
    bands = [r["relevance"] for r in body["results"]]
    assert set(bands) <= {"strong", "possible", "weak"} and len(set(bands)) >= 2
    order = {"strong": 0, "possible": 1, "weak": 2}
    assert [order[b] for b in bands] == sorted(order[b] for b in bands), "bands come in score order"
    # The total counts the strong and possible matches (a flat index: exact).
    assert body["total"] == {"count": sum(b != "weak" for b in bands), "relation": "eq", "basis": "relevance"}
    # Hybrid scores are rank-fusion scores: no band rather than a wrong one.
    hybrid = client.get("/api/search", params={"q": "a red circle", "keywords": "circle"}).json()
    assert {r["relevance"] for r in hybrid["results"]} == {None}
    assert hybrid["total"]["basis"] == "keywords"
    facets = client.get("/api/facets").json()["facets"]
    assert hybrid["total"]["count"] <= sum(facets["collection"].values())


def test_total_is_on_the_first_page_only(client: TestClient) -> None:
    first = client.get("/api/search", params={"q": "a picture", "k": 5}).json()
    assert first["total"] is not None and first["next_cursor"]
    second = client.get(
        "/api/search", params={"q": "a picture", "k": 5, "cursor": first["next_cursor"]}
    ).json()
    assert second["total"] is None


@pytest.mark.parametrize("order", ["date-asc", "date-desc"])
def test_sort_by_date_pages_through_the_relevant_results(client: TestClient, order: str) -> None:
    seen: list[dict] = []
    params: dict[str, str | int] = {"q": "a picture", "k": 4, "sort": order}
    body = client.get("/api/search", params=params).json()
    assert body["sort"] == order
    total = body["total"]["count"]
    while True:
        seen += body["results"]
        if not body["next_cursor"]:
            break
        body = client.get("/api/search", params={**params, "cursor": body["next_cursor"]}).json()
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)), "no result twice across pages"
    if total:
        assert len(ids) == total
    starts = [r["date"]["start_year"] for r in seen if r["date"]]
    assert starts == sorted(starts, reverse=order == "date-desc")
    dated = [r["date"] is not None for r in seen]
    assert dated == sorted(dated, reverse=True), "undated results come last"
    relevance = client.get("/api/search", params={"q": "a picture", "k": 200}).json()["results"]
    pool = {r["id"] for r in relevance if r["relevance"] != "weak"}
    if pool:
        assert set(ids) == pool, "date order lists exactly the strong and possible matches"


def test_sort_is_validated(client: TestClient) -> None:
    r = client.get("/api/search", params={"q": "x", "sort": "colour"})
    assert r.status_code == 422
    r = client.post("/api/search", json={"terms": [{"kind": "text", "value": "x"}], "sort": "date-desc"})
    assert r.status_code == 200 and r.json()["sort"] == "date-desc"


def test_every_operation_is_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            summary = op.get("summary", "")
            assert summary and "_" not in summary, f"{method} {path} has no summary of its own"
            assert not summary.lower().replace(" ", "_").endswith(("_get", "_post")), (path, summary)
            assert len(op.get("description", "")) > 20, f"{method} {path} has no description"


def test_health_says_the_version(client: TestClient) -> None:
    from iconosearch import __version__

    assert client.get("/healthz").json()["version"] == __version__


def test_model_card_and_datasheet_pages(client: TestClient) -> None:
    card = client.get("/about/model-card")
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/html")
    assert "<h1>" in card.text and "iconosearch-lite" in card.text
    sheet = client.get("/about/datasheet")
    assert sheet.status_code == 200 and "<h1>" in sheet.text


def test_documents_do_not_pass_raw_html_through() -> None:
    from iconosearch.api.pages import render_markdown

    page = render_markdown("# Card\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))", "t")
    assert "<script>alert" not in page
    assert 'href="javascript:' not in page


def test_calibrate_folder_measures_and_saves_where_asked(tmp_path: Path) -> None:
    from iconosearch.evaluation.calibration import calibrate_folder

    folder = Path(__file__).resolve().parents[1] / "demo" / "collection"
    target, cal = calibrate_folder(
        "iconosearch-lite", folder, data_dir=tmp_path, out=tmp_path / "relevance.json", limit=24
    )
    assert target == tmp_path / "relevance.json" and target.is_file()
    assert "(24 items)" in cal.to_dict()["measured_on"]
