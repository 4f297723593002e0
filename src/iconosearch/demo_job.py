"""The main job on the bundled demo collection: build its IIIF, serve it, harvest it over HTTP, index, serve.

The demo goes through exactly the path a real institution's collection takes: the local folder becomes
IIIF (Presentation 3 + a level-2 Image API service), the API serves it at ``/iiif/local/``, the harvester
fetches it over HTTP like any remote collection, and the index is built with the embedded default model.
The server is started first, with an empty index, and picks the new index version up without restart.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from iconosearch.api.server import BackgroundServer
from iconosearch.config import CollectionConfig, Settings

log = logging.getLogger(__name__)

DEMO_COLLECTION = "demo"
INDEX_NAME = "default"
DEMO_LABEL = "Heritage demo: European paintings, USDA pomological watercolours, manuscript constellations"
# The three searches the demo prints, chosen from the metadata before any result was seen (one per set:
# see demo/DATASHEET.md, "Example queries"). The search page offers them first, then two more of the
# issue's examples.
EXAMPLE_QUERIES = ("a winter landscape with skaters", "pears", "Andromeda")
PAGE_EXAMPLES = (*EXAMPLE_QUERIES, "ships in a harbour", "a stag hunt")

Step = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot run; the message says why and what to do."""


def find_demo_collection(start: Path | None = None) -> Path:
    """The bundled demo collection: ``demo/collection`` of the source checkout, or below ``start``."""
    candidates = []
    if start is not None:
        candidates.append(start / "demo" / "collection")
    candidates.append(Path(__file__).resolve().parents[2] / "demo" / "collection")
    candidates.append(Path.cwd() / "demo" / "collection")
    for path in candidates:
        if (path / "metadata.csv").is_file():
            return path
    raise DemoError(
        "the demo collection (demo/collection with metadata.csv) was not found; run the demo from a "
        "checkout of the iconosearch repository"
    )


def port_is_free(host: str, port: int) -> bool:
    """Whether the server could listen on ``port``: a port held only by TIME_WAIT connections is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The server (uvicorn) binds with SO_REUSEADDR, so a just-stopped demo's port is usable again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class ExampleResult:
    query: str
    titles: list[str]


@dataclass
class DemoRun:
    url: str
    server: BackgroundServer
    timings: dict[str, float] = field(default_factory=dict)
    harvest: dict[str, Any] = field(default_factory=dict)
    indexed: int = 0
    index_version: str = ""
    examples: list[ExampleResult] = field(default_factory=list)


def demo_settings(settings: Settings, base_url: str) -> Settings:
    """The settings with the demo collection added: a IIIF collection served by our own API."""
    url = f"{base_url}/iiif/local/{DEMO_COLLECTION}/collection.json"
    demo = CollectionConfig(kind="collection", url=url, label=DEMO_LABEL, example_queries=list(PAGE_EXAMPLES))
    collections = {**settings.collections, DEMO_COLLECTION: demo}
    server = settings.server.model_copy(update={"public_url": base_url})
    # Our own server on loopback: no politeness delay needed (remote collections keep theirs).
    limits = settings.limits.model_copy(update={"harvest_delay_s": 0.0, "harvest_concurrency": 8})
    return settings.model_copy(update={"collections": collections, "server": server, "limits": limits})


def run_demo(
    settings: Settings,
    *,
    collection_dir: Path | None = None,
    port: int | None = None,
    step: Step | None = None,
    progress: Any = None,
) -> DemoRun:
    """Build, serve, harvest over HTTP, index; returns with the server running (call ``server.stop()``)."""
    from iconosearch.api.app import create_app
    from iconosearch.datadir import DataDir
    from iconosearch.harvest.harvester import run_harvest
    from iconosearch.iiif.local import build_local_iiif
    from iconosearch.index.builder import build_index
    from iconosearch.models.embedder import load_embedder

    say = step or (lambda _msg: None)
    folder = collection_dir or find_demo_collection()
    host = settings.server.host
    port = port or settings.server.port
    if not port_is_free(host, port):
        raise DemoError(f"port {port} on {host} is in use; choose another with --port")
    base_url = f"http://{host}:{port}"
    settings = demo_settings(settings, base_url)
    data = DataDir(settings.data_dir).ensure()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    say(f"building the demo collection's static IIIF from {folder}")
    built = build_local_iiif(
        folder,
        data.local_iiif / DEMO_COLLECTION,
        base_url=f"{base_url}/iiif/local/{DEMO_COLLECTION}",
        label=DEMO_LABEL,
        max_pixels=settings.limits.image_max_pixels,
    )
    timings["build_iiif_s"] = time.perf_counter() - t
    say(f"{built.manifests} manifests, {len(built.skipped)} images skipped")

    t = time.perf_counter()
    server = BackgroundServer(create_app(settings, reload_interval_s=1.0), host, port).start()
    timings["start_server_s"] = time.perf_counter() - t
    run = DemoRun(url=base_url, server=server, timings=timings)
    try:
        say(f"server up on {base_url}; harvesting {settings.collections[DEMO_COLLECTION].url} over HTTP")
        t = time.perf_counter()
        summary = run_harvest(settings, DEMO_COLLECTION, progress=progress)
        timings["harvest_s"] = time.perf_counter() - t
        run.harvest = summary.as_dict()

        say(f"loading model {settings.model}")
        t = time.perf_counter()
        embedder = load_embedder(settings.model)
        timings["load_model_s"] = time.perf_counter() - t

        say("embedding and indexing")
        t = time.perf_counter()
        version = build_index(settings, INDEX_NAME, [DEMO_COLLECTION], embedder, progress=progress)
        timings["index_s"] = time.perf_counter() - t
        run.index_version = version.version
        run.indexed = version.manifest.count

        t = time.perf_counter()
        _wait_ready(base_url, version.version)
        timings["pick_up_index_s"] = time.perf_counter() - t
        run.examples = [_example(base_url, q) for q in EXAMPLE_QUERIES]
    except BaseException:
        server.stop()
        raise
    return run


def _wait_ready(base_url: str, version: str, timeout_s: float = 240.0) -> None:
    """Poll until the running API serves ``version`` (it watches for new versions; no restart) and
    has warmed up its model (a cold start on busy CPUs takes tens of seconds)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while time.monotonic() < deadline:
            resp = client.get("/readyz")
            if resp.status_code == 200 and version in resp.text:
                return
            time.sleep(0.2)
    raise DemoError(f"the API did not pick up index version {version} within {timeout_s:.0f} s")


def _example(base_url: str, query: str) -> ExampleResult:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        resp = client.get("/api/search", params={"q": query, "k": 5})
        resp.raise_for_status()
        hits = resp.json()["results"]
    titles = []
    for hit in hits:
        caption = hit.get("caption") or {}
        text = next(iter(caption.values()), [""])[0] if caption else ""
        titles.append(text[:70])
    return ExampleResult(query=query, titles=titles)
