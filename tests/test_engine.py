"""The query engine on real FAISS + SQLite indexes of synthetic vectors."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconosearch.config import LimitsConfig
from iconosearch.index.engine import IndexNotReadyError, ModelMismatchError, SearchEngine
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import BuildOptions, EmbeddedRecord, update_version, write_version
from iconosearch.query import (
    EmptyQueryError,
    Filters,
    InvalidCursorError,
    InvalidFilterError,
    InvalidImageError,
    LimitExceededError,
    Query,
    QueryError,
    Term,
    UnknownCollectionError,
    UnknownItemError,
    UrlNotAllowedError,
)
from iconosearch.rights import rights_class
from tests.helpers.index_data import MODEL, HashEmbedder, build, make_items, make_record


def engine_for(data_dir: Path, **kwargs: object) -> SearchEngine:
    embedder = HashEmbedder()
    return SearchEngine.open(data_dir, embedder_loader=lambda spec: embedder, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[EmbeddedRecord]]:
    data_dir = tmp_path_factory.mktemp("small")
    items = make_items(300)
    build(data_dir, items)
    return data_dir, items


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[EmbeddedRecord]]:
    """3000 records in an approximate (IVF) index, so filters meet the hard case."""
    data_dir = tmp_path_factory.mktemp("large")
    items = make_items(3000)
    v = build(data_dir, items, options=BuildOptions(exact_max=1000))
    assert v.manifest.faiss_type == "ivf-sq8"
    return data_dir, items


def item_query(rid: str, **kwargs: object) -> Query:
    return Query(terms=(Term("item", rid),), **kwargs)  # type: ignore[arg-type]


def test_not_ready_until_built_then_reloads(tmp_path: Path) -> None:
    engine = engine_for(tmp_path)
    assert not engine.ready
    with pytest.raises(IndexNotReadyError):
        engine.search(Query(terms=(Term("text", "x"),)))
    with pytest.raises(IndexNotReadyError):
        engine.info()
    assert not engine.reload_if_changed()
    items = make_items(50)
    build(tmp_path, items)
    assert engine.reload_if_changed()
    assert engine.ready and engine.info().count == 50
    assert not engine.reload_if_changed()


def test_item_query_finds_itself_with_cosine_one(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, items = small
    engine = engine_for(data_dir)
    target = items[17].record
    page = engine.search(item_query(target.id, k=5, collapse_duplicates=False))
    assert page.hits[0].record == target
    assert page.hits[0].score == pytest.approx(1.0, abs=1e-4)
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True)
    # Scores are real cosines of the stored vectors.
    vec = {i.record.id: i.vector / np.linalg.norm(i.vector) for i in items}
    for hit in page.hits:
        assert hit.score == pytest.approx(float(vec[target.id] @ vec[hit.record.id]), abs=1e-4)
    info = engine.info()
    assert info.model_spec == "test-hash" and info.dim == 32 and info.count == 300
    assert set(info.collections) == {"maps", "prints", "photos"}
    assert page.index_version == info.version


def test_text_query_uses_the_index_model_and_caches(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, _ = small
    embedder = HashEmbedder()
    engine = SearchEngine.open(data_dir, embedder_loader=lambda spec: embedder)
    page = engine.search(Query(terms=(Term("text", "a harbour at night"),), k=3))
    assert len(page.hits) == 3
    engine.search(Query(terms=(Term("text", "a  harbour at night "),), k=3))
    assert embedder.text_calls == 1


def test_model_mismatch_refused(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, _ = small

    class Other(HashEmbedder):
        fingerprint = "something-else"

    engine = SearchEngine.open(data_dir, embedder_loader=lambda spec: Other())
    with pytest.raises(ModelMismatchError):
        engine.search(Query(terms=(Term("text", "ship"),)))


def test_weighted_terms_push_away(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, items = small
    engine = engine_for(data_dir)
    a, b = items[3].record.id, items[4].record.id
    vec = {i.record.id: i.vector / np.linalg.norm(i.vector) for i in items}
    plain = engine.search(item_query(a, k=20, collapse_duplicates=False))
    away = engine.search(
        Query(terms=(Term("item", a), Term("item", b, -0.7)), k=20, collapse_duplicates=False)
    )
    mean_b = lambda page: np.mean([vec[h.record.id] @ vec[b] for h in page.hits])  # noqa: E731
    assert mean_b(away) < mean_b(plain)
    with pytest.raises(QueryError, match="positive"):
        engine.search(Query(terms=(Term("item", a, -1.0),)))


@pytest.mark.parametrize("strategy", ["auto", "subset", "selector", "overfetch"])
def test_selective_filters_still_return_k_exact_results(
    large: tuple[Path, list[EmbeddedRecord]], strategy: str
) -> None:
    data_dir, items = large
    embedder = HashEmbedder()
    engine = SearchEngine(
        IndexStore(data_dir / "indexes", "default"),
        embedder_loader=lambda spec: embedder,
        filter_strategy=strategy,
        subset_max=100 if strategy == "auto" else 50_000,
    )
    # A few % of the index: maps dated 1600–1650.
    filters = Filters(collections=("maps",), year_from=1600, year_to=1650)
    matching = [
        i
        for i in items
        if i.record.collection == "maps"
        and i.record.date is not None
        and i.record.date.end_year >= 1600
        and i.record.date.start_year <= 1650
    ]
    assert 20 <= len(matching) <= 0.05 * len(items)
    query_vec = items[0].vector / np.linalg.norm(items[0].vector)
    page = engine.search(item_query(items[0].record.id, k=15, filters=filters, collapse_duplicates=False))
    assert len(page.hits) == 15
    assert all(h.record.id in {m.record.id for m in matching} for h in page.hits)
    exact = sorted(matching, key=lambda i: -float(i.vector / np.linalg.norm(i.vector) @ query_vec))[:15]
    if strategy == "subset":  # exact scores of the stored vectors
        assert [h.record.id for h in page.hits] == [i.record.id for i in exact]
    else:  # scores from the 8-bit quantised index: near-ties may swap, the set must hold
        assert len({h.record.id for h in page.hits} & {i.record.id for i in exact}) >= 14


def test_filters_each_kind(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, items = small
    engine = engine_for(data_dir)
    q = items[0].record.id

    def ids(filters: Filters) -> set[str]:
        out: set[str] = set()
        page = engine.search(item_query(q, k=200, filters=filters, collapse_duplicates=False))
        out.update(h.record.id for h in page.hits)
        while page.next_cursor:
            page = engine.search(
                item_query(q, k=200, filters=filters, collapse_duplicates=False, cursor=page.next_cursor)
            )
            out.update(h.record.id for h in page.hits)
        return out

    recs = [i.record for i in items]
    assert ids(Filters(rights=("open",))) == {r.id for r in recs if rights_class(r.rights) == "open"}
    assert ids(Filters(rights=("restricted",))) == {
        r.id for r in recs if rights_class(r.rights) == "restricted"
    }
    assert ids(Filters(has_caption=False)) == {r.id for r in recs if not r.caption}
    assert ids(Filters(languages=("nl",))) == {r.id for r in recs if "nl" in r.caption}
    assert ids(Filters(providers=("BRITISH LIBRARY",))) == {
        r.id for r in recs if r.providers[0].label["en"] == ["British Library"]
    }
    assert ids(Filters(year_from=1990)) == {
        r.id for r in recs if r.date is not None and r.date.end_year >= 1990
    }
    assert ids(Filters(providers=("Nobody",))) == set()


def test_pagination_visits_every_result_exactly_once(tmp_path: Path) -> None:
    items = make_items(230)
    # Two pictures that appear twice, so collapsing is exercised while paging.
    twins = [
        EmbeddedRecord(make_record(5000 + j, manifest=f"https://twin.org/{j}"), f"t{j}", items[j].vector)
        for j in range(2)
    ]
    build(tmp_path, [*items, *twins])
    engine = engine_for(tmp_path)
    all_ids = {i.record.id for i in [*items, *twins]}
    for collapse in (False, True):
        seen: list[str] = []
        pages = 0
        cursor = None
        while True:
            page = engine.search(
                item_query(items[5].record.id, k=7, cursor=cursor, collapse_duplicates=collapse)
            )
            pages += 1
            for hit in page.hits:
                seen.append(hit.record.id)
                seen.extend(hit.duplicates)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)), "a result was visited twice"
        assert set(seen) == all_ids, "a result was never visited"
        assert pages == (-(-len(all_ids) // 7) if not collapse else -(-(len(all_ids) - 2) // 7))


def test_collapsed_hit_lists_its_duplicates(tmp_path: Path) -> None:
    items = make_items(100)
    twin = EmbeddedRecord(
        make_record(999, collection="prints", manifest="https://other.org/m"), "x", items[8].vector
    )
    build(tmp_path, [*items, twin])
    engine = engine_for(tmp_path)
    page = engine.search(item_query(items[8].record.id, k=5))
    first = page.hits[0]
    assert {first.record.id, *first.duplicates} == {items[8].record.id, twin.record.id}
    assert twin.record.id not in [h.record.id for h in page.hits[1:]]
    assert engine.duplicates(twin.record.id) == (items[8].record.id,)
    assert engine.duplicates(items[50].record.id) == ()
    uncollapsed = engine.search(item_query(items[8].record.id, k=5, collapse_duplicates=False))
    assert {h.record.id for h in uncollapsed.hits[:2]} == {items[8].record.id, twin.record.id}


def test_min_score_threshold(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, items = small
    engine = engine_for(data_dir)
    page = engine.search(item_query(items[1].record.id, k=200, min_score=0.6, collapse_duplicates=False))
    assert page.hits and all(h.score >= 0.6 for h in page.hits)
    assert page.next_cursor is None
    vec = {i.record.id: i.vector / np.linalg.norm(i.vector) for i in items}
    expected = {rid for rid, v in vec.items() if float(v @ vec[items[1].record.id]) >= 0.6 + 1e-5}
    assert expected <= {h.record.id for h in page.hits}


def test_hybrid_keywords_fuse_with_visual(tmp_path: Path) -> None:
    items = make_items(200)
    target = items[120]
    rembrandt = EmbeddedRecord(
        make_record(120, caption="Portrait by Rembrandt van Rijn"), target.content_hash, target.vector
    )
    other = EmbeddedRecord(make_record(7, caption="Rembrandt's house, a street view"), "h7", items[7].vector)
    replaced = {120: rembrandt, 7: other}
    build(tmp_path, [replaced.get(j, item) for j, item in enumerate(items)])
    engine = engine_for(tmp_path)
    # Visually near an unrelated item, keyword "Rembrandt": both Rembrandt records rank high.
    page = engine.search(Query(terms=(Term("item", items[3].record.id),), keywords="rembrandt", k=10))
    top = [h.record.id for h in page.hits]
    assert rembrandt.record.id in top[:3] and other.record.id in top[:3]
    # Keywords alone work too, and only matching records come back.
    only = engine.search(Query(keywords="Rembrandt", k=10))
    assert {h.record.id for h in only.hits} == {rembrandt.record.id, other.record.id}
    assert only.facets["collection"]
    assert sum(only.facets["collection"].values()) == 2
    none = engine.search(Query(keywords="zeppelin", k=10))
    assert none.hits == () and none.next_cursor is None


def test_image_bytes_query(small: tuple[Path, list[EmbeddedRecord]], tmp_path: Path) -> None:
    data_dir, _ = small
    engine = engine_for(data_dir)
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="PNG")
    page = engine.search(Query(terms=(Term("image", buf.getvalue()),), k=4))
    assert len(page.hits) == 4
    with pytest.raises(InvalidImageError):
        engine.search(Query(terms=(Term("image", b"not an image at all"),)))
    with pytest.raises(InvalidImageError):
        engine.search(Query(terms=(Term("image", b""),)))


def test_bad_input_gets_typed_errors(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, items = small
    engine = engine_for(data_dir, limits=LimitsConfig(k_max=50, depth_max=100))
    rid = items[0].record.id
    cases: list[tuple[Query, type[Exception]]] = [
        (Query(), EmptyQueryError),
        (Query(terms=(Term("text", "   "),)), EmptyQueryError),
        (Query(keywords="  "), EmptyQueryError),
        (Query(terms=(Term("item", rid, -1.0), Term("text", "x", -2.0))), QueryError),
        (Query(terms=(Term("item", rid, 0.0),)), EmptyQueryError),
        (item_query(rid, filters=Filters(collections=("nope",))), UnknownCollectionError),
        (item_query(rid, k=51), LimitExceededError),
        (item_query(rid, k=0), QueryError),
        (item_query(rid, k=10, cursor="garbage!"), InvalidCursorError),
        (item_query(rid, filters=Filters(year_from=1900, year_to=1800)), InvalidFilterError),
        (item_query(rid, filters=Filters(rights=("free",))), InvalidFilterError),  # type: ignore[arg-type]
        (item_query(rid, filters=Filters(languages=("english!",))), InvalidFilterError),
        (item_query(rid, filters=Filters(providers=(" ",))), InvalidFilterError),
        (item_query("0123456789abcdef"), UnknownItemError),
        (item_query("not-an-id"), UnknownItemError),
        (item_query(rid, min_score=3.0), QueryError),
        (Query(terms=(Term("url", "https://example.org/a.jpg"),)), UrlNotAllowedError),
    ]
    for query, error in cases:
        with pytest.raises(error):
            engine.search(query)
    # Paging past depth_max is refused; the last allowed page has no next cursor.
    page = engine.search(item_query(rid, k=50, collapse_duplicates=False))
    page = engine.search(item_query(rid, k=50, collapse_duplicates=False, cursor=page.next_cursor))
    assert page.next_cursor is None
    # A cursor from another query is refused.
    first = engine.search(item_query(rid, k=5))
    with pytest.raises(InvalidCursorError):
        engine.search(item_query(items[1].record.id, k=5, cursor=first.next_cursor))


def test_facets_count_filtered_records(small: tuple[Path, list[EmbeddedRecord]]) -> None:
    data_dir, items = small
    engine = engine_for(data_dir)
    facets = engine.facets(Filters())
    assert set(facets) == {"collection", "institution", "rights", "century", "suggested_division"}
    assert facets["suggested_division"] == {}  # built without suggested subjects
    assert sum(facets["collection"].values()) == len(items)
    assert facets["collection"]["maps"] == sum(1 for i in items if i.record.collection == "maps")
    maps = engine.facets(Filters(collections=("maps",)))
    assert maps["collection"] == {"maps": facets["collection"]["maps"]}
    undated = sum(1 for i in items if i.record.collection == "maps" and i.record.date is None)
    assert maps["century"].get("unknown", 0) == undated
    page = engine.search(item_query(items[0].record.id, filters=Filters(collections=("maps",))))
    assert page.facets == maps
    assert engine.get(items[3].record.id) == items[3].record
    assert engine.get("ffffffffffffffff") is None and engine.get("bogus") is None


class _ImageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ("/to-file", "/loop", "/to-png"):
            target = {"/to-file": "file:///etc/passwd", "/loop": "/loop", "/to-png": "/a.png"}[self.path]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (10, 120, 200)).save(buf, format="PNG")
        body = buf.getvalue() if self.path != "/big" else b"x" * 5000
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_terms_refuse_loopback_and_bad_schemes(
    small: tuple[Path, list[EmbeddedRecord]], image_server: str
) -> None:
    data_dir, _ = small
    engine = engine_for(data_dir, allow_url_queries=True)
    for url in (
        f"{image_server}/a.png",
        "http://localhost:1/x.png",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
    ):
        with pytest.raises(UrlNotAllowedError):
            engine.search(Query(terms=(Term("url", url),)))
    for url in ("file:///etc/passwd", "ftp://example.org/x.png", "http://user:pw@example.org/x.png"):
        with pytest.raises(UrlNotAllowedError):
            engine.search(Query(terms=(Term("url", url),)))


def test_url_term_fetches_with_limits(small: tuple[Path, list[EmbeddedRecord]], image_server: str) -> None:
    data_dir, _ = small
    embedder = HashEmbedder()
    engine = SearchEngine(
        IndexStore(data_dir / "indexes", "default"),
        embedder_loader=lambda spec: embedder,
        allow_url_queries=True,
        allow_private_urls=True,  # the test server is on loopback
        limits=LimitsConfig(upload_max_bytes=4096),
    )
    page = engine.search(Query(terms=(Term("url", f"{image_server}/a.png"),), k=3))
    assert len(page.hits) == 3
    with pytest.raises(InvalidImageError, match="larger"):
        engine.search(Query(terms=(Term("url", f"{image_server}/big"),)))
    # Redirects are followed, each hop checked again.
    assert engine.search(Query(terms=(Term("url", f"{image_server}/to-png"),), k=3)).hits
    with pytest.raises(UrlNotAllowedError, match="http"):
        engine.search(Query(terms=(Term("url", f"{image_server}/to-file"),)))
    with pytest.raises(UrlNotAllowedError, match="redirects"):
        engine.search(Query(terms=(Term("url", f"{image_server}/loop"),)))


def test_concurrent_readers_during_switches_never_error(tmp_path: Path) -> None:
    items = make_items(400)
    store = IndexStore(tmp_path / "indexes", "default")
    write_version(store, items, MODEL)
    engine = engine_for(tmp_path)
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()
    # Switches begun and finished by the writer. The engine honours a cursor across one switch (it keeps the
    # previous version); on a starved thread two switches can pass between a reader's pages, and then the
    # refusal is the documented behaviour, not an error.
    switches = {"begun": 0, "done": 0}

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                rid = items[int(rng.integers(0, 100))].record.id
                done_before = switches["done"]
                page = engine.search(item_query(rid, k=10, collapse_duplicates=False))
                assert len(page.hits) == 10 and page.hits[0].record.id == rid
                if page.next_cursor:
                    try:
                        engine.search(
                            item_query(rid, k=10, collapse_duplicates=False, cursor=page.next_cursor)
                        )
                    except InvalidCursorError:
                        if switches["begun"] - done_before < 2:
                            raise
                counts.append(engine.info().count)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for step in range(6):
            base = store.current()
            assert base is not None
            extra = make_items(5, start=10_000 + 5 * step, seed=step + 10)
            update_version(store, base, add=extra, remove=[items[300 + step].record.id], model=MODEL)
            switches["begun"] += 1
            assert engine.reload_if_changed()
            switches["done"] += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert counts and set(counts) <= {400 + 4 * s for s in range(7)}
    assert engine.info().count == 400 + 4 * 6


def test_cursor_survives_one_switch_then_expires(tmp_path: Path) -> None:
    items = make_items(60)
    store = IndexStore(tmp_path / "indexes", "default")
    write_version(store, items, MODEL)
    engine = engine_for(tmp_path)
    q = item_query(items[0].record.id, k=10, collapse_duplicates=False)
    first = engine.search(q)
    for step in range(2):
        base = store.current()
        assert base is not None
        update_version(store, base, add=make_items(1, start=900 + step, seed=50 + step), model=MODEL)
        engine.reload_if_changed()
        if step == 0:
            second = engine.search(
                item_query(items[0].record.id, k=10, collapse_duplicates=False, cursor=first.next_cursor)
            )
            assert second.index_version == first.index_version
            assert not {h.record.id for h in first.hits} & {h.record.id for h in second.hits}
    with pytest.raises(InvalidCursorError, match="rebuilt"):
        engine.search(
            item_query(items[0].record.id, k=10, collapse_duplicates=False, cursor=first.next_cursor)
        )


def test_failing_new_version_keeps_old_one_serving(tmp_path: Path) -> None:
    items = make_items(40)
    v1 = build(tmp_path, items)
    engine = engine_for(tmp_path)
    store = IndexStore(tmp_path / "indexes", "default")
    v2 = build(tmp_path, make_items(41))
    (v2.path / "vectors.faiss").write_bytes(b"corrupt")
    assert not engine.reload_if_changed()
    assert engine.info().version == v1.version
    assert engine.search(item_query(items[0].record.id, k=3)).hits
    assert store.current_name() == v2.version


@pytest.mark.parametrize("filtered", [False, True])
def test_pages_of_an_approximate_index_match_one_deep_page(
    large: tuple[Path, list[EmbeddedRecord]], filtered: bool
) -> None:
    data_dir, items = large
    engine = engine_for(data_dir)
    filters = Filters(rights=("open",)) if filtered else Filters()
    rid = items[11].record.id
    deep = engine.search(item_query(rid, k=200, filters=filters))
    paged: list[str] = []
    cursor = None
    for _ in range(8):
        page = engine.search(item_query(rid, k=25, filters=filters, cursor=cursor))
        paged.extend(h.record.id for h in page.hits)
        cursor = page.next_cursor
    assert len(paged) == len(set(paged)) == 200
    assert paged == [h.record.id for h in deep.hits]
