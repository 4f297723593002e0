"""Tests for the small, plausible bugs a mutation check planted and the rest of the suite let through.

(a) the benchmark's bootstrap resampling single queries instead of whole manifests; (b) a last page that is
exactly full still handing out a ``next_cursor``; (c) ``POST /api/search`` dropping a filter; (d) a
re-harvest keeping the old image when a manifest's image URL changed. Plus scores clamped to [-1, 1] where
FAISS produces them (float32 rounding made an image queried as itself score 1.0000002).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from iconosearch.api import schemas as s
from iconosearch.api.params import filters_from_body
from iconosearch.config import CollectionConfig
from iconosearch.evaluation.benchmark import EvalSet, ModelEmbeddings, compare
from iconosearch.evaluation.bootstrap import paired_bootstrap, recall_statistic
from iconosearch.evaluation.metrics import retrieval_ranks
from iconosearch.evaluation.pairs import Caption, Pair
from iconosearch.harvest.state import HarvestState
from iconosearch.index import faiss_index
from iconosearch.query import Filters, Query, Term
from tests.helpers.http_server import FixtureServer, image_server
from tests.helpers.index_data import build, make_items
from tests.test_engine import engine_for
from tests.test_harvest import run, settings_for
from tests.test_harvest_outcomes import manifest


def test_a_bootstrap_resamples_whole_manifests() -> None:
    rng = np.random.default_rng(3)
    n_groups, per_group, dim = 12, 5, 16
    pairs, texts, items, langs, groups, colls = [], [], [], [], [], []
    for g in range(n_groups):
        for j in range(per_group):
            item = f"i{g}-{j}"
            pairs.append(Pair(item, f"m{g}", "c", Path(f"{item}.jpg"), item, (Caption(item, "en"),)))
            texts.append(item)
            items.append(item)
            langs.append("en")
            groups.append(f"m{g}")
            colls.append("c")
    data = EvalSet(tuple(pairs), tuple(texts), tuple(items), tuple(langs), tuple(groups), tuple(colls))
    images = rng.standard_normal((len(pairs), dim)).astype(np.float32)
    noisy = images + rng.standard_normal(images.shape).astype(np.float32) * 1.5
    embeddings = {"base": ModelEmbeddings(noisy, images), "new": ModelEmbeddings(images, images)}
    result = compare(data, embeddings, base="new", ks=(1,), n_resamples=300, seed=7)
    got = next(m for m in result.models if m.spec == "base").vs_base["t2i R@1"]
    ranks = {
        k: retrieval_ranks(e.texts, e.images, data.text_items, data.image_items)
        for k, e in embeddings.items()
    }
    common = {"n_resamples": 300, "seed": 7, "higher_is_better": True}
    by_manifest = paired_bootstrap(
        ranks["base"].t2i, ranks["new"].t2i, recall_statistic(1), clusters=np.asarray(groups), **common
    )
    by_query = paired_bootstrap(ranks["base"].t2i, ranks["new"].t2i, recall_statistic(1), **common)
    assert (by_manifest.low, by_manifest.high) != (by_query.low, by_query.high)
    assert (got.low, got.high) == (by_manifest.low, by_manifest.high)


def test_b_an_exactly_full_last_page_has_no_next_cursor(tmp_path: Path) -> None:
    items = make_items(12)
    build(tmp_path, items)
    engine = engine_for(tmp_path)
    query = Query(terms=(Term("item", items[0].record.id),), k=4, collapse_duplicates=False)
    seen, pages, cursor = [], 0, None
    while True:
        page = engine.search(dataclasses.replace(query, cursor=cursor))
        pages += 1
        seen += [h.record.id for h in page.hits]
        assert page.hits, "a page without results was handed out"
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 12
    whole = engine.search(dataclasses.replace(query, k=12))
    assert len(whole.hits) == 12 and whole.next_cursor is None


def test_c_every_body_filter_reaches_the_query() -> None:
    body = s.FiltersIn(
        collections=["maps"],
        institutions=["A library"],
        year_from=1600,
        year_to=1799,
        rights=["open"],
        languages=["nl"],
        has_caption=True,
        suggested_divisions=["2"],
    )
    got = filters_from_body(body)
    assert got == Filters(
        collections=("maps",),
        providers=("A library",),
        year_from=1600,
        year_to=1799,
        rights=("open",),
        languages=("nl",),
        has_caption=True,
        suggested_divisions=("2",),
    )
    # Every field of Filters is set to something other than its default: none can be dropped unseen.
    defaults = Filters()
    for f in dataclasses.fields(Filters):
        assert getattr(got, f.name) != getattr(defaults, f.name), f"filter {f.name} was not carried over"


def test_d_a_changed_image_url_fetches_the_new_image(tmp_path: Path) -> None:
    def with_service(ident: str) -> dict[str, Any]:
        # The image resource keeps its id (so the record keeps its id); only its image service moves.
        doc = manifest(srv.url("/m"), ["https://example.org/images/page-1"])
        body = doc["items"][0]["items"][0]["items"][0]["body"]
        body["service"] = [{"@id": srv.url(f"/img/{ident}"), "@type": "ImageService2", "profile": "level1"}]
        return doc

    with FixtureServer() as srv:
        image_server(srv)
        url = srv.add_json("/m/manifest.json", with_service("old"))
        settings = settings_for(tmp_path, m=CollectionConfig(kind="manifest", url=url))
        first = run(settings, "m")
        assert first.images_fetched == 1
        with HarvestState(settings.data_dir / "state.sqlite") as state:
            (before,) = state.iter_images("m")
        srv.add_json("/m/manifest.json", with_service("new"))
        again = run(settings, "m")
        assert again.records_new == 0 and again.images_fetched == 1 and again.outcome == "ok"
        with HarvestState(settings.data_dir / "state.sqlite") as state:
            (after,) = state.iter_images("m")
        assert after.record.id == before.record.id
        assert after.content_hash != before.content_hash
        assert srv.hits() and after.path.read_bytes() != before.path.read_bytes()


def test_scores_are_clamped_where_faiss_produces_them() -> None:
    # A unit vector whose float32 inner product with itself rounds above 1 (found by search, seed 0).
    rng = np.random.default_rng(0)
    for _ in range(1000):
        v = rng.standard_normal(512).astype(np.float32)
        v /= np.linalg.norm(v)
        raw = faiss.IndexFlatIP(512)
        raw.add(v[None])
        if raw.search(v[None], 1)[0][0, 0] > 1.0:
            break
    else:
        raise AssertionError("no vector with a rounding overshoot found")
    scores, _ = faiss_index.search(raw, v[None], 1)
    assert -1.0 <= scores[0, 0] <= 1.0
    exact, _ = faiss_index.exact_knn(v[None], v[None], 1)
    assert -1.0 <= exact[0, 0] <= 1.0
