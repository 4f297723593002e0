"""Hybrid text search (``Query.mode``): a text query's words are also matched on the catalogue text and
fused with the visual ranking when they single out a few records. Real FAISS and SQLite FTS5 indexes; the
embedder is the deterministic stand-in of the engine tests, so that which record the *vectors* alone put
first is known."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from iconosearch.index.engine import SearchEngine
from iconosearch.index.ranking import HYBRID_MAX_SHARE, fts_words_expression
from iconosearch.index.versions import EmbeddedRecord
from iconosearch.query import Filters, InvalidCursorError, Query, SearchPage, Term
from tests.helpers.index_data import HashEmbedder, build, make_items, make_record

N = 200


def engine_for(data_dir: Path, **kwargs: object) -> SearchEngine:
    embedder = HashEmbedder()
    return SearchEngine.open(data_dir, embedder_loader=lambda spec: embedder, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """200 records captioned "item N river/street"; two of them named in their catalogue text."""
    data_dir = tmp_path_factory.mktemp("hybrid")
    items = make_items(N)
    named = {
        150: "Princess Andromeda (Leiden Aratea). Constellation figure from a Carolingian manuscript",
        40: "Stag Hunt",
    }
    # The named records keep their vectors: only the catalogue text knows the names.
    out = [
        EmbeddedRecord(make_record(j, caption=named[j]), item.content_hash, item.vector)
        if j in named
        else item
        for j, item in enumerate(items)
    ]
    build(data_dir, out)
    return data_dir, {"andromeda": out[150].record.id, "stag": out[40].record.id}


def text_query(text: str, **kwargs: object) -> Query:
    return Query(terms=(Term("text", text),), collapse_duplicates=False, **kwargs)  # type: ignore[arg-type]


def ids(page: SearchPage) -> list[str]:
    return [h.record.id for h in page.hits]


def test_a_name_only_the_catalogue_knows_is_found(catalogue: tuple[Path, dict[str, str]]) -> None:
    data_dir, named = catalogue
    engine = engine_for(data_dir)
    vector = engine.search(text_query("Andromeda", k=N, mode="vector"))
    assert ids(vector).index(named["andromeda"]) >= 5  # the vectors alone do not know the name
    hybrid = engine.search(text_query("Andromeda", k=10))  # hybrid is the engine's default
    assert ids(hybrid)[0] == named["andromeda"]
    # A title, in other words around it: stop words dropped, every content word required.
    stag = engine.search(text_query("a stag hunt", k=10))
    assert ids(stag)[0] == named["stag"]
    # Fused scores are keyword-query scores: no calibrated band, total counted as keyword matches.
    assert hybrid.total is not None and (hybrid.total.count, hybrid.total.basis) == (1, "keywords")
    assert hybrid.thresholds is None


def test_a_visual_query_is_untouched_when_no_word_matches(catalogue: tuple[Path, dict[str, str]]) -> None:
    data_dir, _ = catalogue
    engine = engine_for(data_dir)
    for text in ("a zeppelin over the sea", "of the and"):  # no record's words; only stop words
        hybrid = engine.search(text_query(text, k=20))
        vector = engine.search(text_query(text, k=20, mode="vector"))
        assert ids(hybrid) == ids(vector)
        assert [h.score for h in hybrid.hits] == [h.score for h in vector.hits]
        assert hybrid.total == vector.total


def test_words_that_match_too_many_records_are_not_fused(catalogue: tuple[Path, dict[str, str]]) -> None:
    data_dir, _ = catalogue
    engine = engine_for(data_dir)
    # "street" is in about 4 of 5 captions: a kind of record, not a name.
    hybrid = engine.search(text_query("street", k=20))
    vector = engine.search(text_query("street", k=20, mode="vector"))
    assert ids(hybrid) == ids(vector)
    # A filter narrows what the share is counted against: the name is then still fused, and a filter
    # that excludes the named record leaves nothing to fuse.
    andromeda_collection = ("maps", "prints", "photos")[150 % 3]
    kept = engine.search(text_query("Andromeda", k=5, filters=Filters(collections=(andromeda_collection,))))
    assert kept.total is not None and kept.total.basis == "keywords"
    others = tuple(c for c in ("maps", "prints", "photos") if c != andromeda_collection)
    filtered = Filters(collections=others)
    assert ids(engine.search(text_query("Andromeda", k=10, filters=filtered))) == ids(
        engine.search(text_query("Andromeda", k=10, filters=filtered, mode="vector"))
    )


def test_opt_out_per_query_and_per_engine(catalogue: tuple[Path, dict[str, str]]) -> None:
    data_dir, named = catalogue
    vector_engine = engine_for(data_dir, search_mode="vector")
    default = vector_engine.search(text_query("Andromeda", k=5))
    assert named["andromeda"] not in ids(default)
    assert default.total is not None and default.total.basis != "keywords"
    asked = vector_engine.search(text_query("Andromeda", k=5, mode="hybrid"))
    assert ids(asked)[0] == named["andromeda"]
    # A cursor belongs to its mode: the rankings differ.
    first = engine_for(data_dir).search(text_query("Andromeda", k=5))
    assert first.next_cursor is not None
    with pytest.raises(InvalidCursorError):
        engine_for(data_dir).search(text_query("Andromeda", k=5, cursor=first.next_cursor, mode="vector"))


def test_an_explicit_keyword_clause_is_not_doubled(catalogue: tuple[Path, dict[str, str]]) -> None:
    data_dir, named = catalogue
    engine = engine_for(data_dir)
    # The caller's keywords say which words matter: the text's own words are not matched as well.
    page = engine.search(text_query("Andromeda", keywords="stag", k=5))
    assert ids(page)[0] == named["stag"]
    assert page.total is not None and page.total.count == 1


def test_the_api_takes_the_mode_per_request(catalogue: tuple[Path, dict[str, str]]) -> None:
    from fastapi.testclient import TestClient

    from iconosearch.api.app import create_app
    from iconosearch.config import Settings

    data_dir, named = catalogue
    app = create_app(Settings(data_dir=data_dir), engine=engine_for(data_dir), reload_interval_s=0)
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)

        def first(**params: str) -> str:
            response = client.get("/api/search", params={"q": "Andromeda", "k": 5, **params})
            assert response.status_code == 200, response.text
            return str(response.json()["results"][0]["id"])

        assert first() == named["andromeda"]
        assert first(mode="vector") != named["andromeda"]
        body = {"terms": [{"kind": "text", "value": "Andromeda"}], "k": 5, "mode": "vector"}
        posted = client.post("/api/search", json=body)
        assert posted.status_code == 200 and posted.json()["results"][0]["id"] != named["andromeda"]
        bad = client.get("/api/search", params={"q": "Andromeda", "mode": "keywords"})
        assert bad.status_code in (400, 422) and "mode" in bad.text
    assert Settings(search={"mode": "vector"}).search.mode == "vector"


def test_words_expression() -> None:
    assert fts_words_expression(["a winter landscape with skaters"]) == '"winter"* "landscape"* "skaters"*'
    assert fts_words_expression(["Stag Hunt", "stag"]) == '"stag"* "hunt"*'
    assert fts_words_expression(['the "quoted" x OR y: 1909']) == '"quoted"* "1909"*'
    assert fts_words_expression(["of the", ""]) is None
    assert 0 < HYBRID_MAX_SHARE < 1


@pytest.mark.slow
def test_the_real_model_finds_andromeda_by_its_title(tmp_path: Path) -> None:
    """The demo's 85 manuscript figures, embedded with the real default model, with the catalogue text a
    local-folder harvest gives them (title, description, subjects): "Andromeda" finds both Andromeda
    figures first, and a query whose words name no figure ranks as the embedding alone does."""
    import csv
    import hashlib

    from iconosearch.captions import build_caption
    from iconosearch.index.store import IndexStore
    from iconosearch.index.versions import ModelInfo, write_version
    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.pipeline import embed_images
    from iconosearch.records import ImageRecord, MetadataPair, record_id

    demo = Path(__file__).resolve().parents[1] / "demo" / "collection"
    if not (demo / "metadata.csv").is_file():
        pytest.skip("demo/collection is absent")
    with (demo / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["file"].startswith("stellarium-manuscripts/")]
    embedder = load_embedder("iconosearch-lite", device="cpu")
    hashes = [hashlib.sha256((demo / r["file"]).read_bytes()).hexdigest() for r in rows]
    vectors = embed_images(
        embedder, [(h, demo / r["file"]) for h, r in zip(hashes, rows, strict=True)], cache_dir=None
    )
    row_of = {h: i for i, h in enumerate(vectors.hashes)}
    items = []
    for h, r in zip(hashes, rows, strict=True):
        manifest = f"https://demo.test/{r['file']}"
        record = ImageRecord(
            id=record_id(manifest, f"{manifest}/canvas", f"{manifest}/image"),
            collection="demo",
            manifest_id=manifest,
            canvas_id=f"{manifest}/canvas",
            image_id=f"{manifest}/image",
            manifest_label={"none": [r["title"]]},
            summary={"none": [r["description"]]},
            metadata=(MetadataPair({"en": ["Subject"]}, {"none": r["subjects"].split(";")}),),
        )
        items.append(
            EmbeddedRecord(replace(record, caption=build_caption(record)), h, vectors.vectors[row_of[h]])
        )
    store = IndexStore(tmp_path / "indexes", "default")
    write_version(store, items, ModelInfo("iconosearch-lite", embedder.fingerprint, embedder.dim))
    engine = SearchEngine(store, embedder_loader=lambda _spec: embedder)
    andromeda = {i.record.id for i in items if "andromeda" in i.record.manifest_label["none"][0].lower()}
    assert len(andromeda) == 2
    assert set(ids(engine.search(text_query("Andromeda", k=5)))[:2]) == andromeda
    visual = "a creature with wings in flight"
    hybrid = engine.search(text_query(visual, k=10))
    assert ids(hybrid) == ids(engine.search(text_query(visual, k=10, mode="vector")))
    assert hybrid.thresholds is not None  # a plain cosine ranking keeps its calibrated bands


def test_the_words_are_counted_once_per_version_words_and_filters(
    catalogue: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from iconosearch.index.metadata import Metadata

    data_dir, named = catalogue
    engine = engine_for(data_dir)
    counted: list[str] = []
    real = Metadata.keyword_count

    def counting(self: Metadata, match: str, filters: Filters, limit: int) -> int:
        counted.append(match)
        return real(self, match, filters, limit)

    monkeypatch.setattr(Metadata, "keyword_count", counting)
    first = engine.search(text_query("Andromeda", k=1))
    again = engine.search(text_query("Andromeda", k=1))
    assert ids(first) == ids(again) == [named["andromeda"]] and len(counted) == 1
    assert first.next_cursor is not None  # the next page asks again: answered from the count kept
    engine.search(text_query("Andromeda", k=1, cursor=first.next_cursor))
    assert len(counted) == 1
    engine.search(text_query("Andromeda", k=1, filters=Filters(collections=("maps",))))
    engine.search(text_query("a stag hunt", k=1))
    assert len(counted) == 3
