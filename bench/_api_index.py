"""A large synthetic index version for ``bench/api.py``: n vectors of the serving model's dimension with
catalogue-like records, written once into a cached data dir and reused by later runs.

The version is what the product's streaming large-build plan makes for n vectors (``ivf_build.plan``,
the in-memory writer's choice too: at 1M × 768, IVF-PQ with SQ8 re-ranking over √n lists, because an
IVF-SQ8 scan per query would take ~30 ms; nprobe tuned to the recall target, files checksummed through
``IndexStore.commit``). Streamed, because the
in-memory writer (``index.versions.write_version``) stacks and normalises every float vector and holds
every record object, which at 1M × 768 dims is over 9 GB on a box whose engineers may use 4 GB each.
Here vectors go chunk by chunk into a memory-mapped ``vectors.npy``, the quantiser trains on a sample
(``ivf_build.build_streaming``). Synthetic vectors have no near-duplicates, so duplicate grouping is
skipped (every record is its own group).

Records: ``TEMPLATES`` distinct catalogue-like records go through the product's ``Metadata.insert``;
the other rows are copies of them made inside SQLite, each with its own id and manifest URL (so no
two results share a presented document or a Content State). Converting and inserting 1M records in
Python takes about 20 CPU minutes on this box, which a shared 2-core machine cannot spare.

Vectors follow ``bench/search.py``'s model of real embeddings (a noisy 64-dimensional subspace with a
decaying spectrum), so IVF has to probe as many lists as it would on real data.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from iconosearch.index import faiss_index, ivf_build  # noqa: E402
from iconosearch.index.metadata import DICTIONARY_SAMPLES, Metadata  # noqa: E402
from iconosearch.index.store import IndexManifest, IndexStore, utc_now_iso  # noqa: E402
from iconosearch.records import (  # noqa: E402
    DateRange,
    ImageRecord,
    ImageService,
    Link,
    MetadataPair,
    Provider,
    id_to_int64,
    record_id,
)
from search import synthetic_chunks  # noqa: E402  # bench/search.py: the same vectors as the FAISS bench

CHUNK = 50_000
TEMPLATES = 20_000
COLLECTIONS = ("paintings", "prints", "maps", "manuscripts", "photographs")
RIGHTS = (
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/publicdomain/mark/1.0/",
    "http://creativecommons.org/licenses/by/4.0/",
    "http://rightsstatements.org/vocab/InC/1.0/",
    None,
)
INSTITUTIONS = tuple(
    f"{kind} {city}"
    for kind in ("Museum", "Library", "Archive")
    for city in ("Amsterdam", "Berlin", "Paris", "Roma", "London", "Wien", "Praha", "Lisboa")
)
SUBJECTS = (
    "harbour with sailing ships",
    "portrait of a woman in a black dress",
    "winter landscape with skaters",
    "still life with flowers in a vase",
    "map of the coast with soundings",
    "view of a city gate",
    "saint reading a book",
    "hunting party in a forest",
    "botanical study of a pear",
    "interior of a church",
    "river landscape with cattle",
    "design for an ornament",
)
CREATORS = (
    "Jan van Goyen",
    "Maria Sibylla Merian",
    "Albrecht Dürer",
    "Rembrandt van Rijn",
    "Wenceslaus Hollar",
    "anonymous",
    "Hendrick Avercamp",
    "Giovanni Battista Piranesi",
)


def _record(i: int) -> ImageRecord:
    """The ``i``-th record: what a harvested IIIF canvas typically carries (labels in two languages,
    a level-2 image service, metadata pairs, rights, attribution, provider, date, homepage)."""
    manifest = f"https://collections.example.org/iiif/{COLLECTIONS[i % 5]}/{i}/manifest"
    canvas = f"{manifest[:-9]}/canvas/1"
    service = ImageService(
        id=f"https://images.example.org/iiif/3/{i:08d}",
        api_version=3,
        level=2,
        width=2000 + i % 3000,
        height=1500 + i % 2000,
    )
    subject, creator = SUBJECTS[i % len(SUBJECTS)], CREATORS[(i // 7) % len(CREATORS)]
    year = 1450 + (i * 37) % 500
    institution = INSTITUTIONS[i % len(INSTITUTIONS)]
    return ImageRecord(
        id=record_id(manifest, canvas, service.id),
        collection=COLLECTIONS[i % 5],
        manifest_id=manifest,
        canvas_id=canvas,
        image_id=service.id,
        service=service,
        width=service.width,
        height=service.height,
        canvas_label={"none": ["f. 1r" if i % 4 == 0 else "recto"]},
        manifest_label={"en": [f"{subject.capitalize()} ({i})"], "nl": [f"Object {i}"]},
        summary={"en": [f"{subject.capitalize()}, by {creator}, {year}."]},
        metadata=(
            MetadataPair(label={"en": ["Creator"]}, value={"none": [creator]}),
            MetadataPair(label={"en": ["Date"]}, value={"none": [str(year)]}),
            MetadataPair(label={"en": ["Object type"]}, value={"en": [COLLECTIONS[i % 5][:-1]]}),
        ),
        rights=RIGHTS[i % len(RIGHTS)],
        required_statement=MetadataPair(label={"en": ["Attribution"]}, value={"en": [f"{institution}"]}),
        providers=(Provider(label={"en": [institution]}, homepage="https://www.example.org/"),),
        date=DateRange(year, year + (i % 3) * 5),
        homepage=(Link(id=f"https://collections.example.org/objects/{i}", label={"en": ["Object page"]}),),
        part_of=(COLLECTIONS[i % 5].capitalize(),),
        caption={"en": [f"{subject} by {creator}"]},
    )


def _ids(n: int) -> np.ndarray:
    """Record ids (as FAISS ids): the templates' own, then random distinct 63-bit ones for the copies."""
    ids = np.array([id_to_int64(_record(i).id) for i in range(min(n, TEMPLATES))], dtype=np.int64)
    rng = np.random.default_rng(7)
    extra = np.unique(rng.integers(1, 2**63 - 1, size=n + 1000, dtype=np.int64))
    extra = np.setdiff1d(extra, ids)
    rng.shuffle(extra)
    return np.concatenate([ids, extra[: n - len(ids)]])


def _copy_records(meta: Metadata, ids: np.ndarray, templates: int) -> None:
    """Rows ``templates``… as copies of row ``row % templates`` under the ids of ``ids`` (see module doc).

    Stored records are compressed (``Metadata.codec``) and the captions' FTS5 table keeps no text, so
    each copy's record is re-encoded by a Python function inside the ``INSERT … SELECT`` and its caption
    is taken from the template record."""
    conn, codec = meta.conn, meta.codec
    assert codec is not None  # a new file always has one

    def copied(data: bytes, int_id: int, row: int) -> bytes:
        record = orjson.loads(codec.decompress(data))
        record["id"] = f"{int_id:016x}"
        record["manifest_id"] = f"{record['manifest_id']}?copy={row}"
        return codec.compress(orjson.dumps(record))

    def caption(data: bytes) -> str:
        return "\n".join(
            v for values in orjson.loads(codec.decompress(data))["caption"].values() for v in values
        )

    conn.create_function("copied_record", 3, copied, deterministic=True)
    conn.create_function("template_caption", 1, caption, deterministic=True)
    # ``template`` is indexed: the tables' own indexes come with ``finish``, so without it each join
    # scanned every copy per template row (40k copies: 38 s a table; 1M: ~15 min).
    conn.execute(
        "CREATE TEMP TABLE copies"
        " (row INTEGER PRIMARY KEY, int_id INTEGER NOT NULL, template INTEGER NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO copies VALUES (?, ?, ?)",
        ((r, int(ids[r]), r % templates) for r in range(templates, len(ids))),
    )
    conn.execute("CREATE INDEX temp.copies_template ON copies(template)")
    source = "FROM copies c JOIN records r ON r.row = c.template"
    conn.execute(
        f"INSERT INTO providers SELECT c.int_id, p.label {source} JOIN providers p ON p.int_id = r.int_id"
    )
    conn.execute(
        f"INSERT INTO languages SELECT c.int_id, l.lang {source} JOIN languages l ON l.int_id = r.int_id"
    )
    conn.execute(
        f"INSERT INTO captions(rowid, text) SELECT c.int_id, template_caption(r.data) {source}"
        " WHERE r.has_caption"
    )
    conn.execute(
        "INSERT INTO records SELECT c.int_id, printf('%016x', c.int_id), c.row, r.collection, r.institution,"
        " r.rights_class, r.year_start, r.year_end, r.century, r.has_caption, c.int_id, r.content_hash,"
        f" copied_record(r.data, c.int_id, c.row) {source}"
    )
    conn.execute("DROP TABLE copies")


def has_index(data_dir: Path) -> bool:
    return (data_dir / "indexes" / "default" / "CURRENT").is_file()


def build(data_dir: Path, n: int, *, spec: str, fingerprint: str, dim: int, log: bool = True) -> dict:
    """Write an ``n``-record version of index ``default`` under ``data_dir``; returns its build timings."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        timings[f"{stage}_s"] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        if log:
            print(f"synthetic index: {stage} done in {timings[f'{stage}_s']} s", file=sys.stderr, flush=True)

    store = IndexStore(data_dir / "indexes", "default")
    version, staging = store.begin()
    try:
        vectors = np.lib.format.open_memmap(
            staging / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim)
        )
        for start, chunk in zip(range(0, n, CHUNK), synthetic_chunks(n, dim, chunk=CHUNK), strict=True):
            vectors[start : start + len(chunk)] = chunk
        ids = _ids(n)
        np.save(staging / "ids.npy", ids)
        lap("vectors")
        fspec = ivf_build.plan(n, dim, memory_budget=faiss_index.DEFAULT_MEMORY_BUDGET)
        rows = np.sort(np.random.default_rng(0).choice(n, min(n, ivf_build.train_size(fspec)), replace=False))
        batches = ((vectors[s : s + CHUNK], ids[s : s + CHUNK]) for s in range(0, n, CHUNK))
        index = ivf_build.build_streaming(fspec, np.asarray(vectors[rows]), batches)
        lap("faiss_build")
        fspec, recall = faiss_index.tune(index, vectors, ids, fspec)
        faiss_index.write(index, staging / "vectors.faiss")
        del index
        lap("faiss_tune")
        templates = min(n, TEMPLATES)
        samples = [_record(i) for i in range(0, templates, max(1, templates // DICTIONARY_SAMPLES))]
        meta = Metadata.create(staging / "metadata.sqlite", samples)
        try:
            meta.insert((_record(i), i, int(ids[i]), None) for i in range(templates))
            _copy_records(meta, ids, templates)
            meta.set_aliases({})
            meta.finish()
        finally:
            meta.close()
        lap("metadata")
        vectors.flush()
        del vectors
        manifest = IndexManifest(
            name="default",
            version=version,
            model_spec=spec,
            model_fingerprint=fingerprint,
            dim=dim,
            count=n,
            faiss_type=fspec.kind,
            faiss_params=dict(fspec.params),
            created=utc_now_iso(),
            recall_at_10=recall,
            collections=COLLECTIONS,
        )
        store.commit(staging, manifest)
        lap("commit")
    except BaseException:
        store.abort(staging)
        raise
    return timings
