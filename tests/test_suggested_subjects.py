"""Machine-suggested ICONCLASS subjects on the real ``iconclass`` data: the candidate subset, the per-model
label cache, index-time suggestions in the metadata and ``suggested_subjects`` in ``/api/items/{id}``."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from iconosearch.api.app import create_app
from iconosearch.config import ServerConfig, Settings
from iconosearch.index.engine import SearchEngine
from iconosearch.index.metadata import Metadata
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import BuildOptions, EmbeddedRecord, update_version, write_version
from iconosearch.query import Filters, Query, Term
from iconosearch.records import id_to_int64
from iconosearch.subjects import vocabulary
from iconosearch.subjects.iconclass import Iconclass
from iconosearch.subjects.suggested import SubjectLabels, candidate_notations, label_text, load_labels
from tests.helpers.browser import live_server
from tests.helpers.demo_index import free_port
from tests.helpers.index_data import MODEL, HashEmbedder, make_record

PICTURED = ("25G21(APPLE)", "11H(GEORGE)", "25F23(LION)", "46C2")


@pytest.fixture(scope="module")
def iconclass() -> Iconclass:
    vocab = vocabulary("iconclass")
    assert isinstance(vocab, Iconclass)
    return vocab


@pytest.fixture(scope="module")
def labels(iconclass: Iconclass, tmp_path_factory: pytest.TempPathFactory) -> SubjectLabels:
    return load_labels(HashEmbedder(), tmp_path_factory.mktemp("labels"), lambda: iconclass)


def test_candidates_are_the_documented_subset(iconclass: Iconclass) -> None:
    chosen = set(candidate_notations(iconclass))
    assert set(PICTURED) | {"1", "25", "25G", "25G2"} <= chosen
    # Deeper unnamed notations, a saint's sub-divisions and qualified names are left out.
    assert not {"25G21", "11H(GEORGE)1", "25G211(NUTSHELL)0"} & chosen
    assert all(label_text(iconclass, n) for n in chosen)
    assert label_text(iconclass, "11H(GEORGE)") == "the warrior martyr George (Georgius)"


def test_label_vectors_are_embedded_once_per_model(iconclass: Iconclass, tmp_path: Path) -> None:
    embedder = HashEmbedder()
    first = load_labels(embedder, tmp_path, lambda: iconclass)
    calls = embedder.text_calls
    assert calls > 0 and first.vectors.shape == (len(first.notations), embedder.dim)

    def no_vocabulary() -> Iconclass:
        raise AssertionError("a cached load must not need the vocabulary")

    again = load_labels(embedder, tmp_path, no_vocabulary)
    assert embedder.text_calls == calls and again.notations == first.notations
    assert np.array_equal(again.vectors, first.vectors)


def items_picturing(
    labels: SubjectLabels, notations: tuple[str, ...], start: int = 0
) -> list[EmbeddedRecord]:
    """Records whose image vector is exactly the text vector of one notation each."""
    rows = [labels.notations.index(n) for n in notations]
    return [
        EmbeddedRecord(make_record(start + j), f"hash{start + j}", labels.vectors[row])
        for j, row in enumerate(rows)
    ]


def test_index_time_suggestions_are_stored_apart_and_served(labels: SubjectLabels, tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "indexes", "default")
    options = BuildOptions(subject_labels=labels)
    items = items_picturing(labels, PICTURED)
    base = write_version(store, items, MODEL, options=options)
    # An update suggests for its new records and drops the removed ones' suggestions.
    added = items_picturing(labels, ("25G21(PEAR)",), start=100)
    v2 = update_version(store, base, add=added, remove=[items[3].record.id], model=MODEL, options=options)
    meta = Metadata(v2.metadata_path)
    try:
        assert meta.suggestions(id_to_int64(items[3].record.id)) == []
        pear = meta.suggestions(id_to_int64(added[0].record.id))
        assert pear[0].notation == "25G21(PEAR)" and len(pear) == 5
    finally:
        meta.close()

    settings = Settings(data_dir=tmp_path, server=ServerConfig(public_url=None))
    app = create_app(settings, reload_interval_s=0)
    with live_server(app, free_port()) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        for item, notation in zip(items[:3], PICTURED, strict=False):
            body = client.get(f"/api/items/{item.record.id}").json()
            suggested = body["suggested_subjects"]
            assert [s["source"] for s in suggested] == ["machine"] * 5
            top = suggested[0]
            assert top["notation"] == notation and top["score"] > 0.99
            assert top["division"] == notation[0] and top["label"]
            assert [s["score"] for s in suggested] == sorted((s["score"] for s in suggested), reverse=True)
            # The catalogue's own metadata is untouched by suggestions.
            assert all("ICONCLASS" not in str(m) for m in body["metadata"])


def test_the_best_suggestions_division_filters_and_facets(labels: SubjectLabels, tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "indexes", "default")
    items = items_picturing(labels, PICTURED)  # divisions 2, 1, 2, 4
    write_version(store, items, MODEL, options=BuildOptions(subject_labels=labels))
    engine = SearchEngine.open(tmp_path, embedder_loader=lambda spec: HashEmbedder())
    assert engine.facets(Filters())["suggested_division"] == {"2": 2, "1": 1, "4": 1}
    nature = engine.facets(Filters(suggested_divisions=("2",)))
    assert nature["suggested_division"] == {"2": 2} and sum(nature["collection"].values()) == 2
    page = engine.search(
        Query(terms=(Term("item", items[0].record.id),), filters=Filters(suggested_divisions=("1", "4")))
    )
    assert {h.record.id for h in page.hits} == {items[1].record.id, items[3].record.id}

    settings = Settings(data_dir=tmp_path, server=ServerConfig(public_url=None))
    with (
        live_server(create_app(settings, reload_interval_s=0), free_port()) as base_url,
        httpx.Client(base_url=base_url, timeout=60) as client,
    ):
        r = client.get(
            "/api/search", params={"like": items[0].record.id, "suggested_division": ["1"], "facets": "true"}
        )
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["results"]] == [items[1].record.id]
        r = client.post(
            "/api/search",
            json={
                "terms": [{"kind": "item", "value": items[0].record.id}],
                "filters": {"suggested_divisions": ["4"]},
            },
        )
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["results"]] == [items[3].record.id]
        assert client.get("/api/search", params={"q": "x", "suggested_division": "X"}).status_code == 422


def test_versions_built_without_suggestions_serve_none(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "indexes", "default")
    items = [EmbeddedRecord(make_record(0), "h0", np.eye(MODEL.dim, dtype=np.float32)[0])]
    version = write_version(store, items, MODEL)
    meta = Metadata(version.metadata_path)
    try:
        assert meta.suggestions(id_to_int64(items[0].record.id)) == []
    finally:
        meta.close()


def test_labels_of_another_model_are_refused(labels: SubjectLabels, tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "indexes", "default")
    other = SubjectLabels(labels.notations, labels.texts, labels.vectors, "another-model")
    with pytest.raises(ValueError, match="another model"):
        write_version(
            store, items_picturing(labels, PICTURED), MODEL, options=BuildOptions(subject_labels=other)
        )
