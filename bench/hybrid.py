"""Hybrid vs vector text search on the default model's held-out splits, through the real engine.

For each set (paintings, watercolours, manuscript figures, clip art, the photo-like Tux Paint stamps) and
split part, the part's images are indexed with the records a local-folder harvest makes of them (catalogue
text by the caption rule: title, description, subjects), and every query of every type (full caption,
title, subject, creator, period: ``iconosearch.lite.heritage``) is searched through ``SearchEngine`` in
``vector`` and in ``hybrid`` mode. A query's relevant images are those whose query of that type is the same
text (a subject query is answered by any image of that subject), as in the model card. Reported per
gallery (set × query type): text→image R@10 in both modes, the paired bootstrap of the difference
(resampling split groups: works, varieties, constellations), and how often the words were fused.

**Decision rule, fixed before any number was seen** (issue 12): hybrid becomes the default
(``[search] mode``) when, on the *validation* galleries, (a) the macro-average R@10 over all galleries
(each set × query type one gallery; clip art and photo-like stamps one each) rises, and (b) no gallery's
R@10 drops by more than 2 points. The test part is then reported as it comes out. The photo-like stamps
have no validation part of their own (the model card uses the same 150 for choosing and reporting), so
they appear in both.

Run: ``nice python bench/hybrid.py --heritage DIR --part val|test [--out FILE]`` (DIR holds
``wga-paintings/``, ``usda-pomological/``, ``stellarium-manuscripts/``; the clip-art corpus comes from
``~/.cache/iconosearch/corpus``). Prints one JSON object.

``python bench/hybrid.py --latency N`` instead times what hybrid mode adds to a text query on a synthetic
index of N records (random vectors, captions "item I street" with "harbour" in 1 %): words that match
nothing, 1 % and 99 % of the records, in both modes (a stub text encoder, so only the engine is timed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
K = 10
MAX_DROP_POINTS = 2.0


@dataclass
class Gallery:
    name: str
    records: list[Any] = field(default_factory=list)
    """(ImageRecord, content hash, image path) of every image."""
    queries: dict[str, list[tuple[str, set[str], str]]] = field(default_factory=dict)
    """Query type → (query text, relevant record ids, split group of the first relevant image)."""


def _record(rid: str, collection: str, meta: dict[str, str]) -> Any:
    """The record a local-folder harvest makes of one image (``iiif.local``: label, summary, metadata)."""
    from iconosearch.captions import build_caption
    from iconosearch.records import ImageRecord, MetadataPair, record_id

    pairs = []
    for key, label in (("title", "Title"), ("creator", "Creator"), ("date", "Date"), ("subjects", "Subject")):
        if meta.get(key):
            values = (
                [v.strip() for v in meta[key].split(";") if v.strip()] if key == "subjects" else [meta[key]]
            )
            pairs.append(MetadataPair({"en": [label]}, {"none": values}))
    manifest, canvas, image = f"urn:eval:{rid}", f"urn:eval:{rid}/canvas", f"urn:eval:{rid}/image"
    record = ImageRecord(
        id=record_id(manifest, canvas, image),
        collection=collection,
        manifest_id=manifest,
        canvas_id=canvas,
        image_id=image,
        manifest_label={"none": [meta.get("title") or rid]},
        summary={"none": [meta["description"]]} if meta.get("description") else {},
        metadata=tuple(pairs),
    )
    return replace(record, caption=build_caption(record))


def _add_query(g: Gallery, qtype: str, text: str, rid: str, group: str) -> None:
    from iconosearch.lite.evaluate import normalise_query

    key = normalise_query(text)
    for entry in g.queries.setdefault(qtype, []):
        if normalise_query(entry[0]) == key:
            entry[1].add(rid)
            return
    g.queries[qtype].append((text, {rid}, group))


def heritage_galleries(root: Path, part: str) -> list[Gallery]:
    from iconosearch.evaluation.pairs import Split
    from iconosearch.lite.heritage import SETS, load_heritage, read_rows

    split = Split.from_json(
        json.loads((ROOT / "src/iconosearch/models/lite/split.json").read_text())["heritage"]
    )
    out = []
    for name, items in load_heritage(root).items():
        rows = {Path(r["file"]).name: r for r in read_rows(root / SETS[name].folder)}
        g = Gallery(name)
        for item in items:
            if split.part_of(item.pair) != part:
                continue
            pair = item.pair
            record = _record(pair.item_id, name, rows[pair.image_path.name])
            g.records.append((record, pair.content_hash, pair.image_path))
            for qtype, text in item.queries.items():
                _add_query(g, qtype, text, record.id, pair.group)
        out.append(g)
    return out


def clipart_galleries(root: Path, part: str) -> list[Gallery]:
    import hashlib

    from iconosearch.lite.build import BuildInputs
    from iconosearch.lite.corpus import normalise_caption
    from iconosearch.lite.sources import load_sources

    inputs = BuildInputs(heritage=root, baseline=ROOT / "bench/baselines/iconosearch-lite-0.1")
    sources = load_sources(inputs, lambda _m: None)
    out = []
    for name, items in (("clipart", sources.clip[part]), ("photos", sources.photos)):
        g = Gallery(name)
        for item in items:
            meta = {"title": item.title, "description": item.description, "subjects": ";".join(item.keywords)}
            record = _record(item.key, name, meta)
            g.records.append((record, hashlib.sha256(item.image.read_bytes()).hexdigest(), item.image))
            _add_query(g, "full", item.caption, record.id, normalise_caption(item.caption))
        out.append(g)
    return out


def _engine(g: Gallery, embedder: Any, data_dir: Path, cache: Path) -> Any:
    from iconosearch.datadir import DataDir
    from iconosearch.index.engine import SearchEngine
    from iconosearch.index.store import IndexStore
    from iconosearch.index.versions import EmbeddedRecord, ModelInfo, write_version
    from iconosearch.models.pipeline import embed_images

    result = embed_images(embedder, [(h, p) for _r, h, p in g.records], cache_dir=cache)
    row = {h: i for i, h in enumerate(result.hashes)}
    items = [EmbeddedRecord(r, h, result.vectors[row[h]]) for r, h, _p in g.records if h in row]
    store = IndexStore(DataDir(data_dir).indexes, g.name)
    write_version(store, items, ModelInfo("iconosearch-lite", embedder.fingerprint, embedder.dim))
    return SearchEngine(store, embedder_loader=lambda _spec: embedder)


def ranks(engine: Any, queries: list[tuple[str, set[str], str]], mode: str) -> tuple[np.ndarray, int]:
    """Rank of the first relevant image per query (``K + 1`` when not in the top K), and how many
    queries were fused with their keyword ranking."""
    from iconosearch.query import Query, Term

    out, fused = [], 0
    for text, relevant, _group in queries:
        page = engine.search(Query(terms=(Term("text", text),), k=K, mode=mode, collapse_duplicates=False))  # type: ignore[arg-type]
        ids = [h.record.id for h in page.hits]
        out.append(next((i + 1 for i, rid in enumerate(ids) if rid in relevant), K + 1))
        fused += page.total is not None and page.total.basis == "keywords"
    return np.asarray(out, dtype=np.int64), fused


def macro_interval(raw: list[tuple[np.ndarray, np.ndarray, list[str]]]) -> list[float]:
    """95 % interval of the macro-average R@10 difference: every gallery resampled by group, together."""
    from iconosearch.evaluation.bootstrap import resample_weights

    rng = np.random.default_rng(0)
    diffs = np.zeros(1000)
    for hybrid, vector, groups in raw:
        w = resample_weights(len(groups), n_resamples=1000, rng=rng, clusters=groups)
        diffs += (w @ (hybrid <= K) - w @ (vector <= K)) / w.sum(axis=1)
    diffs /= len(raw)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return [round(100 * float(low), 1), round(100 * float(high), 1)]


class StubText:
    """A text encoder that costs nothing: a seeded random unit vector per text."""

    spec = fingerprint = "synthetic"
    dim = 64

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def latency(n: int, n_queries: int = 200) -> dict[str, Any]:
    from iconosearch.index.engine import SearchEngine
    from iconosearch.index.store import IndexStore
    from iconosearch.index.versions import EmbeddedRecord, ModelInfo, write_version
    from iconosearch.query import Query, Term
    from iconosearch.records import ImageRecord, record_id

    stub = StubText()
    vectors = np.random.default_rng(3).standard_normal((n, stub.dim)).astype(np.float32)
    items = []
    for i in range(n):
        m = f"https://example.org/{i}/manifest"
        record = ImageRecord(
            id=record_id(m, m + "/c", m + "/i"),
            collection="synthetic",
            manifest_id=m,
            canvas_id=m + "/c",
            image_id=m + "/i",
            caption={"en": [f"item {i} {'harbour' if i % 100 == 0 else 'street'}"]},
        )
        items.append(EmbeddedRecord(record, None, vectors[i]))
    out: dict[str, Any] = {"n": n, "queries": n_queries}
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(Path(tmp) / "indexes", "default")
        write_version(store, items, ModelInfo("synthetic", "synthetic", stub.dim))
        engine = SearchEngine(store, embedder_loader=lambda _spec: stub)
        for words in ("zeppelin", "harbour", "street"):
            for mode in ("vector", "hybrid"):
                times = []
                for _ in range(n_queries):
                    query = Query(terms=(Term("text", words),), k=24, mode=mode)
                    t = time.perf_counter()
                    engine.search(query)
                    times.append((time.perf_counter() - t) * 1000)
                out[f"{words}/{mode}"] = {
                    "p50_ms": round(float(np.percentile(times, 50)), 2),
                    "p99_ms": round(float(np.percentile(times, 99)), 2),
                }
        engine.close()
    return out


def main() -> dict[str, Any]:
    from iconosearch.evaluation.bootstrap import paired_bootstrap, recall_statistic
    from iconosearch.models.embedder import load_embedder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heritage", type=Path)
    parser.add_argument("--part", choices=("val", "test"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/iconosearch/bench-hybrid")
    parser.add_argument("--latency", type=int, metavar="N")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: manuscript figures only; --latency at most 2000"
    )
    args = parser.parse_args()
    if args.latency:
        return latency(min(args.latency, 2000), 20) if args.quick else latency(args.latency)
    if args.heritage is None or args.part is None:
        parser.error("--heritage and --part are needed (or --latency N)")
    started = time.perf_counter()
    embedder = load_embedder("iconosearch-lite")
    galleries = heritage_galleries(args.heritage, args.part)
    if args.quick:
        galleries = [g for g in galleries if g.name == "manuscripts"]
    else:
        galleries += clipart_galleries(args.heritage, args.part)
    rows: list[dict[str, Any]] = []
    raw = []
    with tempfile.TemporaryDirectory() as tmp:
        for g in galleries:
            engine = _engine(g, embedder, Path(tmp), args.cache)
            for qtype, queries in g.queries.items():
                vector, _ = ranks(engine, queries, "vector")
                hybrid, fused = ranks(engine, queries, "hybrid")
                groups = [q[2] for q in queries]
                iv = paired_bootstrap(hybrid, vector, recall_statistic(K), clusters=groups, seed=0)
                raw.append((hybrid, vector, groups))
                rows.append(
                    {
                        "gallery": f"{g.name}/{qtype}",
                        "images": len(g.records),
                        "queries": len(queries),
                        "fused": fused,
                        "vector_R@10": round(100 * float(np.mean(vector <= K)), 1),
                        "hybrid_R@10": round(100 * float(np.mean(hybrid <= K)), 1),
                        "diff": round(100 * iv.estimate, 1),
                        "ci95": [round(100 * iv.low, 1), round(100 * iv.high, 1)],
                        "vector_R@1": round(100 * float(np.mean(vector <= 1)), 1),
                        "hybrid_R@1": round(100 * float(np.mean(hybrid <= 1)), 1),
                    }
                )
            engine.close()
    macro_v = float(np.mean([r["vector_R@10"] for r in rows]))
    macro_h = float(np.mean([r["hybrid_R@10"] for r in rows]))
    worst = min(r["diff"] for r in rows)
    result = {
        "part": args.part,
        "galleries": rows,
        "macro_vector_R@10": round(macro_v, 1),
        "macro_hybrid_R@10": round(macro_h, 1),
        "macro_diff_ci95": macro_interval(raw),
        "worst_gallery_diff": worst,
        "rule_met": bool(macro_h > macro_v and worst >= -MAX_DROP_POINTS),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
