"""Every record indexed or accounted for: embedded sub-collections (with reused or missing ids) and their
embedded manifest references, harvested over HTTP without fetching the sub-collections again."""

from __future__ import annotations

from pathlib import Path

from iconosearch.config import CollectionConfig
from iconosearch.harvest.state import HarvestState
from iconosearch.iiif.collection import parse_collection
from tests.helpers.http_server import FixtureServer, jpeg
from tests.test_harvest import run, settings_for
from tests.test_harvest_outcomes import manifest

V2 = "http://iiif.io/api/presentation/2/context.json"


def _parent_v2(srv: FixtureServer, parent: str, subs: int, per_sub: int) -> None:
    """The published pattern: sub-collections embedded in the parent, reusing the parent's @id (and one
    with no @id at all), each listing its manifests inline."""
    collections = []
    for i in range(subs):
        refs = []
        for j in range(per_sub):
            path = f"/m/{i}-{j}"
            srv.add(f"/img/{i}-{j}.jpg", jpeg((40, 30), f"{i}-{j}"), content_type="image/jpeg")
            srv.add_json(f"{path}/manifest.json", manifest(srv.url(path), [srv.url(f"/img/{i}-{j}.jpg")]))
            refs.append(
                {"@id": srv.url(f"{path}/manifest.json"), "@type": "sc:Manifest", "label": f"{i}-{j}"}
            )
        sub = {"@type": "sc:Collection", "label": f"Volume {i}", "manifests": refs}
        if i < subs - 1:
            sub["@id"] = parent  # reused: the same id as the parent
        collections.append(sub)
    srv.add_json(
        "/parent.json",
        {
            "@context": V2,
            "@id": parent,
            "@type": "sc:Collection",
            "label": "Parent",
            "collections": collections,
        },
    )


def test_embedded_sub_collections_with_reused_or_missing_ids(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        parent = srv.url("/parent.json")
        _parent_v2(srv, parent, subs=4, per_sub=3)
        settings = settings_for(tmp_path, p=CollectionConfig(kind="collection", url=parent))
        summary = run(settings, "p")
        assert (summary.manifests, summary.records, summary.images_fetched) == (12, 12, 12)
        assert summary.outcome == "ok" and summary.complete and not summary.failed
        assert srv.hits("/parent.json") == 1  # the embedded sub-collections were not fetched again
        with HarvestState(settings.data_dir / "state.sqlite") as state:
            part_of = {r.part_of for r in state.iter_records("p")}
        assert part_of == {("Parent", f"Volume {i}") for i in range(4)}


def test_v3_embedded_collection_without_id_is_walked_inline() -> None:
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": "https://example.org/top.json",
        "type": "Collection",
        "items": [
            {
                "type": "Collection",
                "label": {"en": ["A"]},
                "items": [{"id": "https://e.org/1", "type": "Manifest"}],
            },
            {
                "id": "https://example.org/top.json",
                "type": "Collection",
                "items": [{"id": "https://e.org/2", "type": "Manifest"}],
            },
            {"id": "https://example.org/elsewhere.json", "type": "Collection"},
        ],
    }
    page = parse_collection(doc)
    embedded = [r for r in page.collections if r.doc is not None]
    assert len(embedded) == 2 and len({r.id for r in embedded}) == 2
    assert [parse_collection(r.doc, fallback_id=r.id).manifests[0].id for r in embedded if r.doc] == [
        "https://e.org/1",
        "https://e.org/2",
    ]
    # A plain reference is still fetched by its id.
    assert [r.id for r in page.collections if r.doc is None] == ["https://example.org/elsewhere.json"]
