"""Side by side with clip-retrieval's back end (``clip_back``) on the same vectors, in one run; prints JSON.

clip-retrieval pins numpy < 2, open_clip < 3 and transformers 4, so it cannot share the project's
environment: install it into its own venv and pass that interpreter::

    python3 -m venv /work/cr-venv && /work/cr-venv/bin/pip install clip-retrieval
    python bench/clip_retrieval.py --clip-retrieval-python /work/cr-venv/bin/python [--vectors 200000]
                                   [--rounds 5] [--queries 200] [--concurrency 1 8] [--quick]
                                   [--their-index same|autofaiss]

Without a working clip-retrieval (no ``--clip-retrieval-python``, or its interpreter cannot import
``clip_retrieval.clip_back``) it prints ``{"skipped": "<reason>"}`` and exits 0.

**The same data.** ``--vectors`` seeded synthetic unit vectors (``bench/search.py``'s generator: a noisy
low-rank subspace, as hard for IVF as real embeddings) of the default model's dimension (768):

- iconosearch: a real index version written by the builder (``write_version``: FAISS kind, lists and
  probes chosen and tuned by it, duplicate groups, SQLite records with a catalogue-like record each);
- clip-retrieval: the same FAISS kind with the same lists and probes built from the same vectors
  (its ``image.index``, rows numbered as its metadata), and ``url`` and ``caption`` per row, served as its
  LAION-5B guide (``docs/laion5B_h14_back.md``) serves them: parquet converted by its ``parquet_to_arrow``,
  ``use_arrow`` and ``enable_faiss_memory_mapping``.

With ``--their-index autofaiss`` clip-retrieval serves instead the index its own tooling builds from the
same vectors (autofaiss's ``build_index`` with ``clip-retrieval index``'s defaults, 4 GB for the index,
16 GB available; its choice and estimated recall are in ``their_index``): each product as it ships,
rather than the back ends alone.

**The same work, by vector.** Each query is a stored vector: iconosearch is asked ``GET /api/search?
like=<id>&k=24`` (more like this item: the engine looks the item's vector up itself), clip-retrieval
``POST /knn-service`` with that vector as ``embedding_input`` and what its own ``ClipClient`` sends by
default (``num_images`` 24, ``deduplicate``, safety and violence flags, which are no-ops without those
models). Text is not compared: clip_back encodes text with a CLIP model it loads by name from a model
hub (not reachable here) and iconosearch with its own towers, so a text row would compare models, not
back ends. clip_back has no option to skip loading its model, so ``all_clip.load_clip`` is replaced by a
stub returning no model (the embedding path never touches it), and its aesthetic embeddings (a
download) and multilingual model are switched off. Both servers run on 127.0.0.1 (clip_back's Flask
server is pinned there; it binds 0.0.0.0 by default); ``top10_overlap`` checks that the two answer
the same neighbours. clip-retrieval's processes run with ``OMP_NUM_THREADS=1``, as iconosearch's engine
runs FAISS (one thread per request): with FAISS's default of all cores, its OpenMP threads spin against
each other and the load on a shared 2-core box (50–270 ms a query in process at 5k vectors, against
2.4 ms on one thread), which would measure the box, not the back end.

**Measured, interleaved.** Per round, each side in turn (the order alternates): ``--queries`` requests
from one client (p50 / p99), then ``--concurrency`` clients for ``--seconds`` (throughput). Reported
per side: the median over rounds of each round's figure, and ``ratio`` = clip-retrieval ÷ iconosearch
(latency) or iconosearch ÷ clip-retrieval (throughput). ``engine`` does the same in process, without
HTTP: ``SearchEngine.search`` against ``KnnService.query`` (in a clip-retrieval worker process).

Builds are cached in ``--work-dir`` (default: ``~/.cache/iconosearch/bench-clip-retrieval/``, a folder per
size and per the FAISS index the builder chooses for it), so a rerun only measures; ``--rebuild`` starts
over. The servers and clip-retrieval's engine worker start together, before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
INDICE = "synthetic"
K = 24
SEED = 3
THEIR_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
"""clip-retrieval's processes: FAISS on one thread (see the module doc); its pkg_resources warning off."""
COLUMNS = ["url", "caption"]
"""clip-retrieval's metadata columns, as its LAION-5B back end returns them."""


# --- clip-retrieval's side: run by its own interpreter (``--their-side …``) ---------------------------


def _their_resources(config: Path) -> Any:
    """clip_back's resources for ``config`` (indices_paths.json), loaded as ``clip_back`` loads them."""
    import importlib

    import all_clip

    # By module name: the package's ``__init__`` rebinds ``clip_retrieval.clip_back`` to the function.
    cb = importlib.import_module("clip_retrieval.clip_back")

    # No model: the embedding path never uses it, and clip_back would fetch one from a hub by name.
    all_clip.load_clip = lambda *args, **kwargs: (None, None, None)
    return cb, cb.ClipOptions(
        indice_folder="",
        clip_model="ViT-B/32",
        enable_hdf5=False,
        enable_faiss_memory_mapping=True,
        columns_to_return=COLUMNS,
        reorder_metadata_by_ivf_index=False,
        enable_mclip_option=False,
        use_jit=False,
        use_arrow=True,
        provide_safety_model=False,
        provide_violence_detector=False,
        provide_aesthetic_embeddings=False,
    )


def _their_side(mode: str, argv: list[str]) -> None:
    # This script's folder comes first on sys.path, and its name would shadow the clip_retrieval package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if mode == "probe":
        import importlib.util
        from importlib.metadata import version

        # Finding the package is enough: importing it imports torch and all of clip-retrieval (15 s at
        # load 8, a quarter of a --quick run); its server and engine worker import it next and fail
        # with their log if it is broken.
        if importlib.util.find_spec("clip_retrieval") is None:
            raise SystemExit("No module named 'clip_retrieval'")
        print(json.dumps({p: version(p) for p in ("clip-retrieval", "faiss-cpu", "numpy", "flask")}))
    elif mode == "metadata":
        import pandas as pd
        from clip_retrieval.clip_back_prepro.parquet_to_arrow import parquet_to_arrow

        folder, n = Path(argv[0]), int(argv[1])
        (folder / "parquet").mkdir(parents=True, exist_ok=True)
        rows = range(n)
        pd.DataFrame(
            {
                "url": [f"https://example.org/{i}/full/max/0/default.jpg" for i in rows],
                "caption": [_caption(i) for i in rows],
            }
        ).to_parquet(folder / "parquet" / "0.parquet")
        # As its LAION-5B guide serves metadata: parquet converted to memory-mapped arrow files.
        parquet_to_arrow(str(folder / "parquet"), str(folder / "metadata"), COLUMNS)
    elif mode == "serve":
        import flask

        cb, _ = _their_resources(Path(argv[0]))
        run = flask.Flask.run
        # clip_back binds 0.0.0.0; the bench serves on loopback only.
        flask.Flask.run = lambda self, host=None, **kw: run(self, host="127.0.0.1", **kw)  # type: ignore[method-assign]
        cb.clip_back(
            indices_paths=argv[0],
            port=int(argv[1]),
            enable_faiss_memory_mapping=True,
            use_arrow=True,
            columns_to_return=COLUMNS,
            enable_mclip_option=False,
            use_jit=False,
            provide_aesthetic_embeddings=False,
        )
    elif mode == "autofaiss":
        import numpy as np
        from autofaiss import build_index

        vectors, folder = np.load(argv[0]), Path(argv[1])
        folder.mkdir(parents=True, exist_ok=True)
        # ``clip-retrieval index``'s defaults (clip_index.py): what its users serve unless they tune.
        build_index(
            embeddings=vectors,
            index_path=str(folder / "image.index"),
            index_infos_path=str(folder / "infos.json"),
            max_index_memory_usage="4G",
            current_memory_available="16G",
            metric_type="ip",
        )
    elif mode == "engine":
        _their_engine(Path(argv[0]), Path(argv[1]))
    else:
        raise SystemExit(f"unknown side mode {mode!r}")


def _their_engine(config: Path, vectors_path: Path) -> None:
    """``KnnService.query`` in process: each stdin line is a JSON list of rows to query with, one
    stdout line per input line answers their latencies (ms) and the first query's top-10 ids."""
    import numpy as np

    cb, options = _their_resources(config)
    service = cb.KnnService(clip_resources=cb.load_clip_indices(str(config), options))
    vectors = np.load(vectors_path, mmap_mode="r")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        times, tops = [], []
        for row in json.loads(line):
            vector = np.array(vectors[row])
            start = time.perf_counter()
            hits = service.query(
                embedding_input=vector,
                modality="image",
                num_images=K,
                num_result_ids=K,
                indice_name=INDICE,
                deduplicate=True,
                use_safety_model=True,
                use_violence_detector=True,
            )
            times.append((time.perf_counter() - start) * 1000)
            tops.append([h["id"] for h in hits[:10]])
        print(json.dumps({"ms": times, "top10": tops}), flush=True)


def _caption(i: int) -> str:
    # search.synthetic_caption's text, written here because this side runs in clip-retrieval's venv.
    return f"item {i} {'harbour' if i % 100 == 0 else 'street'}"


# --- the data, built once per size into the work dir ------------------------------------------------


def _default_work_dir(n: int, dim: int) -> Path:
    """Kept under the user's cache, per size and per the FAISS index the builder chooses for it today:
    a rerun only measures (the 200k build takes minutes), and a changed index choice builds afresh."""
    from api import spec_tag  # bench/api.py; imported here: clip-retrieval's side has no iconosearch
    from iconosearch.index.faiss_index import choose_spec

    tag = spec_tag(choose_spec(n, dim))
    return Path.home() / ".cache" / "iconosearch" / "bench-clip-retrieval" / f"{n}x{dim}-{tag}"


def _build(work: Path, n: int, dim: int) -> dict[str, Any]:
    """Both indexes of the same ``n`` × ``dim`` vectors under ``work`` (reused when complete)."""
    done = work / "built.json"
    if done.is_file():
        built: dict[str, Any] = json.loads(done.read_text())
        if built["n"] == n and built["dim"] == dim:
            return built
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "bench"))
    from iconosearch.index import faiss_index
    from iconosearch.index.store import IndexStore
    from iconosearch.index.versions import BuildOptions, EmbeddedRecord, ModelInfo, write_version
    from search import synthetic, synthetic_record  # bench/search.py: the engine bench's data

    work.mkdir(parents=True, exist_ok=True)
    vectors = synthetic(n, dim, seed=SEED)
    np.save(work / "vectors.npy", vectors)
    ids = [synthetic_record(i).id for i in range(n)]
    items = [EmbeddedRecord(synthetic_record(i), None, vectors[i]) for i in range(n)]
    store = IndexStore(work / "iconosearch" / "indexes", "default")
    t = time.perf_counter()
    version = write_version(store, items, ModelInfo("synthetic", "synthetic", dim), options=BuildOptions())
    ours_s = time.perf_counter() - t
    del items
    manifest = version.manifest
    import faiss

    # Theirs: our index emptied and refilled with rows 0…n-1 (clip-retrieval's metadata is by row), so
    # both search the same quantiser, lists and probes.
    t = time.perf_counter()
    ours = faiss.read_index(str(version.faiss_path))
    ours.reset()
    ours.add_with_ids(vectors, np.arange(n, dtype=np.int64))
    faiss_index.set_search_params(
        ours, faiss_index.FaissSpec(manifest.faiss_type, dict(manifest.faiss_params))
    )
    # An IVF-PQ index re-ranked by SQ8 comes in an id map (``faiss_index.build``), which cannot give
    # back vectors by id, as clip_back's ``search_and_reconstruct`` asks: it gets the index inside,
    # whose row numbers are these ids (``ours`` owns it, so it stays referenced until written).
    theirs = faiss.downcast_index(ours.index) if isinstance(ours, faiss.IndexIDMap) else ours
    folder = work / "clip-retrieval" / INDICE
    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(theirs, str(folder / "image.index"))
    theirs_s = time.perf_counter() - t
    (work / "clip-retrieval" / "indices_paths.json").write_text(json.dumps({INDICE: str(folder)}))
    built = {
        "n": n,
        "dim": dim,
        "faiss_type": manifest.faiss_type,
        "faiss_params": {k: v for k, v in manifest.faiss_params.items() if k != "factory"},
        "ids": ids,
        "build_s": {"iconosearch": round(ours_s, 1), "clip_retrieval_faiss_only": round(theirs_s, 1)},
    }
    done.write_text(json.dumps(built))
    return built


# --- serving and measuring ----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _wait_ready(server: subprocess.Popen[bytes], ready_url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 600  # clip_back converts the metadata to HDF5 on its first start
    while True:
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"{server.args!r} did not become ready; its log: {log.read_text()[-2000:]}")
        time.sleep(0.3)


class Sides:
    """The two servers' requests: ``request(side, row)`` asks ``side`` for the neighbours of row."""

    def __init__(self, ours: str, theirs: str, ids: list[str], vectors: Any) -> None:
        self.base = {"iconosearch": ours, "clip_retrieval": theirs}
        self.ids = ids
        self.vectors = vectors
        self.bodies: dict[int, bytes] = {}

    def body(self, row: int) -> bytes:
        """clip_back's request for ``row``, serialised before the clock starts (as ``ClipClient`` sends)."""
        if row not in self.bodies:
            self.bodies[row] = json.dumps(
                {
                    "embedding_input": [float(x) for x in self.vectors[row]],
                    "modality": "image",
                    "num_images": K,
                    "num_result_ids": K,
                    "indice_name": INDICE,
                    "deduplicate": True,
                    "use_safety_model": True,
                    "use_violence_detector": True,
                    "use_mclip": False,
                    "aesthetic_score": "",
                    "aesthetic_weight": "",
                }
            ).encode()
        return self.bodies[row]

    def request(self, side: str, row: int) -> Any:
        """``side``'s request for the neighbours of ``row`` (a ``_load.Request``)."""
        import _load

        if side == "iconosearch":
            return _load.Request("GET", "/api/search?" + urlencode({"like": self.ids[row], "k": K}))
        return _load.Request("POST", "/knn-service", self.body(row), "application/json")


def _single(sides: Sides, side: str, rows: list[int]) -> dict[str, Any]:
    """One client, one request at a time: latencies, answer sizes and the first request's top 10."""
    import asyncio

    import _load

    async def ask() -> list[tuple[float, Any]]:
        connection = await _load.Connection.open(sides.base[side])
        answers = []
        try:
            for row in rows:
                start = time.perf_counter()
                status, body = await connection.send(sides.request(side, row))
                answers.append(((time.perf_counter() - start) * 1000, body))
                if status != 200:
                    raise SystemExit(f"{side} answered {status}: {body[:300]!r}")
        finally:
            await connection.close()
        return answers

    answers = asyncio.run(ask())
    times = [ms for ms, _ in answers]
    sizes = [len(body) for _, body in answers]
    found = [json.loads(body) for _, body in answers]
    if side == "iconosearch":
        found = [page["results"] for page in found]
    row_of = {rid: i for i, rid in enumerate(sides.ids)}
    first = found[0][:10]
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": _pct(times, 0.99),
        "bytes": statistics.median(sizes),
        "hits": statistics.median(len(hits) for hits in found),
        "top10": [row_of[h["id"]] if side == "iconosearch" else h["id"] for h in first],
    }


def _concurrent(sides: Sides, side: str, rows: list[int], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` connections, each sending request after request for ``seconds``: throughput and p99."""
    import asyncio
    import itertools

    import _load

    asked = [itertools.count(c, clients) for c in range(clients)]  # client c: rows c, c + clients, …

    def next_request(c: int) -> Any:
        return sides.request(side, rows[next(asked[c]) % len(rows)])

    run = asyncio.run(_load.closed_loop(sides.base[side], clients, seconds, next_request))
    if run.failures():
        raise SystemExit(f"{side} failed {run.failures()} requests: {run.statuses()}")
    times = [t * 1000 for t in run.latencies()]
    return {"rps": len(times) / run.elapsed_s, "p99_ms": _pct(times, 0.99)}


def _read_through(folders: list[Path]) -> None:
    for path in (p for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()):
        with path.open("rb") as f:
            while f.read(1 << 23):
                pass


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _overlap(a: list[int], b: list[int]) -> float:
    return len(set(a) & set(b)) / max(len(a), 1)


def _engines(
    work: Path,
    their_root: Path,
    python: str,
    built: dict[str, Any],
    plan: list[list[int]],
    started: Callable[[], None],
) -> dict[str, Any]:
    """In process, no HTTP: ``SearchEngine.search`` here and ``KnnService.query`` in a clip-retrieval
    worker, the same rows per round, turns alternating. ``started`` waits for the servers, which start
    while the worker does (each start imports torch: most of a ``--quick`` run), before any timing."""
    from iconosearch.index.engine import SearchEngine
    from iconosearch.query import Query, Term

    ids = built["ids"]
    row_of = {rid: i for i, rid in enumerate(ids)}
    engine = SearchEngine.open(work / "iconosearch")
    worker = subprocess.Popen(
        [
            python,
            __file__,
            "--their-side",
            "engine",
            str(their_root / "indices_paths.json"),
            str(work / "vectors.npy"),
        ],
        env=THEIR_ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    p50s: dict[str, list[float]] = {"iconosearch": [], "clip_retrieval": []}
    p99s: dict[str, list[float]] = {"iconosearch": [], "clip_retrieval": []}
    tops: dict[str, list[int]] = {}
    try:
        started()
        if not json.loads(worker.stdout.readline()).get("ready"):
            raise SystemExit("clip-retrieval's engine worker did not start")
        for r, rows in enumerate(plan):
            for side in _order(r):
                if side == "clip_retrieval":
                    worker.stdin.write(json.dumps(rows) + "\n")
                    worker.stdin.flush()
                    answer = json.loads(worker.stdout.readline())
                    times, tops[side] = answer["ms"], answer["top10"][0]
                else:
                    times = []
                    for row in rows:
                        query = Query(terms=(Term("item", ids[row]),), k=K)
                        start = time.perf_counter()
                        page = engine.search(query)
                        times.append((time.perf_counter() - start) * 1000)
                        if row == rows[0]:
                            tops[side] = [row_of[h.record.id] for h in page.hits[:10]]
                p50s[side].append(statistics.median(times))
                p99s[side].append(_pct(times, 0.99))
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
        engine.close()
    out = _sides_summary(p50s, p99s)
    out["top10_overlap_first_query"] = _overlap(tops["iconosearch"], tops["clip_retrieval"])
    return out


def _order(r: int) -> tuple[str, str]:
    return ("iconosearch", "clip_retrieval") if r % 2 == 0 else ("clip_retrieval", "iconosearch")


def _sides_summary(p50s: dict[str, list[float]], p99s: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        side: {
            "p50_ms": round(statistics.median(p50s[side]), 2),
            "p99_ms": round(statistics.median(p99s[side]), 2),
            "p50_ms_per_round": [round(v, 2) for v in p50s[side]],
        }
        for side in p50s
    }
    for stat in ("p50_ms", "p99_ms"):
        out[f"ratio_{stat[:3]}"] = round(out["clip_retrieval"][stat] / out["iconosearch"][stat], 2)
    return out


def _http(sides: Sides, plan: list[list[int]], levels: list[int], seconds: float) -> dict[str, Any]:
    """Interleaved HTTP rounds: one client (latency), then each of ``levels`` clients (throughput)."""
    p50s: dict[str, list[float]] = {"iconosearch": [], "clip_retrieval": []}
    p99s: dict[str, list[float]] = {"iconosearch": [], "clip_retrieval": []}
    size: dict[str, Any] = {}
    tops: dict[str, list[int]] = {}
    rps: dict[int, dict[str, list[float]]] = {c: {"iconosearch": [], "clip_retrieval": []} for c in levels}
    lat: dict[int, dict[str, list[float]]] = {c: {"iconosearch": [], "clip_retrieval": []} for c in levels}
    for r, rows in enumerate(plan):
        for side in _order(r):
            one = _single(sides, side, rows)
            p50s[side].append(one["p50_ms"])
            p99s[side].append(one["p99_ms"])
            size[side] = {"response_bytes": one["bytes"], "hits_per_response": one["hits"]}
            tops[side] = one["top10"]
        for c in levels:
            for side in _order(r):
                level = _concurrent(sides, side, rows, c, seconds)
                rps[c][side].append(level["rps"])
                lat[c][side].append(level["p99_ms"])
    single = _sides_summary(p50s, p99s)
    for side, shown in size.items():
        single[side].update(shown)
    single["top10_overlap_first_query"] = _overlap(tops["iconosearch"], tops["clip_retrieval"])
    concurrent = []
    for c in levels:
        entry: dict[str, Any] = {"clients": c, "seconds": seconds}
        for side in ("iconosearch", "clip_retrieval"):
            entry[side] = {
                "rps": round(statistics.median(rps[c][side]), 1),
                "p99_ms": round(statistics.median(lat[c][side]), 1),
            }
        entry["ratio_rps"] = round(entry["iconosearch"]["rps"] / entry["clip_retrieval"]["rps"], 2)
        concurrent.append(entry)
    return {"single_client": single, "concurrent": concurrent}


def _their_index(work: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The folder clip-retrieval serves from and what its index is: ``same`` (the index iconosearch
    built, refilled by row: the back ends alone compared) or ``autofaiss`` (built by autofaiss with
    ``clip-retrieval index``'s defaults from the same vectors: each product with its own index)."""
    if args.their_index == "same":
        return work / "clip-retrieval", {"built_by": "iconosearch's builder (the same index)"}
    root = work / "clip-retrieval-autofaiss"
    folder = root / INDICE
    if not (folder / "image.index").is_file():
        subprocess.run(
            [
                args.clip_retrieval_python,
                __file__,
                "--their-side",
                "autofaiss",
                str(work / "vectors.npy"),
                str(folder),
            ],
            env=THEIR_ENV,
            stdout=sys.stderr,
            check=True,
        )
        (root / "indices_paths.json").write_text(json.dumps({INDICE: str(folder)}))
    infos = json.loads((folder / "infos.json").read_text())
    return root, {"built_by": "autofaiss, clip-retrieval index's defaults", **infos}


def _probe(python: str | None) -> tuple[dict[str, str] | None, str]:
    """clip-retrieval's versions through ``python``, or why it is not available."""
    if not python:
        return None, "no --clip-retrieval-python given (clip-retrieval needs its own venv; see --help)"
    try:
        done = subprocess.run(
            [python, __file__, "--their-side", "probe"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot run {python}: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{python} cannot import clip_retrieval.clip_back: {last}"
    return json.loads(done.stdout), ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip-retrieval-python", help="the interpreter of a venv with clip-retrieval")
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768, help="the default model's dimension")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200, help="single-client requests per side and round")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[8])
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level, side and round")
    parser.add_argument(
        "--their-index",
        choices=["same", "autofaiss"],
        default="same",
        help="what clip-retrieval serves: the index iconosearch built, or autofaiss's from the same vectors",
    )
    parser.add_argument("--work-dir", type=Path, help="where the builds are kept (reused when complete)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run in under 60 s, same JSON keys")
    parser.add_argument("--their-side", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.their_side:
        _their_side(args.their_side[0], args.their_side[1:])
        return
    if args.quick:
        args.vectors, args.rounds, args.queries, args.seconds = 5_000, 2, 20, 1.0
    versions, reason = _probe(args.clip_retrieval_python)
    if versions is None:
        print(json.dumps({"skipped": reason}))
        return
    report = _run(args, versions)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


def _run(args: argparse.Namespace, versions: dict[str, str]) -> dict[str, Any]:
    import numpy as np

    work = args.work_dir or _default_work_dir(args.vectors, args.dim)
    if args.rebuild and (work / "built.json").is_file():
        (work / "built.json").unlink()
    built = _build(work, args.vectors, args.dim)
    their_root, their_index = _their_index(work, args)
    their_folder = their_root / INDICE
    if not (their_folder / "parquet" / "0.parquet").is_file():
        subprocess.run(
            [
                args.clip_retrieval_python,
                __file__,
                "--their-side",
                "metadata",
                str(their_folder),
                str(args.vectors),
            ],
            env=THEIR_ENV,
            stdout=sys.stderr,  # its conversion prints progress; stdout is this bench's JSON
            check=True,
        )
    rng = np.random.default_rng(SEED)
    plan = [[int(x) for x in rng.integers(0, args.vectors, args.queries)] for _ in range(args.rounds)]
    # Both sides serve from memory-mapped files: read them once so neither pays the first disk reads
    # (clip-retrieval gets each query's vector in the request; iconosearch reads the item's from
    # vectors.npy, a page fault per cold row).
    _read_through([work / "iconosearch", their_root])
    load_before = os.getloadavg()[0]
    ours_port, their_port = _free_port(), _free_port()
    env = {**os.environ, "ICONOSEARCH_DATA_DIR": str(work / "iconosearch"), "HF_HUB_OFFLINE": "1"}
    ours_cmd = [str(Path(sys.executable).parent / "iconosearch"), "--quiet", "serve", "--host", "127.0.0.1"]
    config = str(their_root / "indices_paths.json")
    servers = {
        f"http://127.0.0.1:{ours_port}/readyz": (
            _launch([*ours_cmd, "--port", str(ours_port)], env, work / "iconosearch.log"),
            work / "iconosearch.log",
        ),
        f"http://127.0.0.1:{their_port}/indices-list": (
            _launch(
                [args.clip_retrieval_python, __file__, "--their-side", "serve", config, str(their_port)],
                THEIR_ENV,
                work / "clip-back.log",
            ),
            work / "clip-back.log",
        ),
    }

    def started() -> None:
        for url, (server, log) in servers.items():
            _wait_ready(server, url, log)

    try:
        engine = _engines(work, their_root, args.clip_retrieval_python, built, plan, started)
        sides = Sides(
            f"http://127.0.0.1:{ours_port}",
            f"http://127.0.0.1:{their_port}",
            built["ids"],
            np.load(work / "vectors.npy", mmap_mode="r"),
        )
        _http(sides, [plan[0][:20]], [], 0.0)  # warm-up: page both indexes in
        http = _http(sides, plan, args.concurrency, args.seconds)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    return {
        "bench": "clip_retrieval.side_by_side",
        "vectors": built["n"],
        "dim": built["dim"],
        "faiss": {"type": built["faiss_type"], **built["faiss_params"]},
        "their_index": their_index,
        "k": K,
        "query": "a stored vector: GET /api/search?like=<id> vs POST /knn-service embedding_input",
        "rounds": args.rounds,
        "queries_per_round": args.queries,
        "versions": versions,
        "build_s": built["build_s"],
        "engine": engine,
        "http": http,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


if __name__ == "__main__":
    main()
