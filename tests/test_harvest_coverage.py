"""Every record indexed or accounted for: embedded sub-collections (with reused or missing ids) and their
embedded manifest references, harvested over HTTP without fetching the sub-collections again."""

from __future__ import annotations

import json
from pathlib import Path

from iconosearch.config import CollectionConfig
from iconosearch.harvest.state import HarvestState
from iconosearch.iiif.collection import parse_collection
from iconosearch.iiif.manifest import parse_manifest
from iconosearch.iiif.text import lang_map
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


def test_language_keys_are_normalised_and_non_languages_kept_as_none() -> None:
    got = lang_map({"fre": ["Carte"], "English": ["A map"], "eng": ["Map"], "true": ["kept"], "EN-gb": ["x"]})
    assert got == {"fr": ["Carte"], "en": ["A map", "Map"], "none": ["kept"], "en-GB": ["x"]}
    assert lang_map([{"@value": "Karte", "@language": "ger"}]) == {"de": ["Karte"]}


def test_mojibake_is_repaired_and_the_original_kept() -> None:
    got = lang_map({"fr": ["MusÃ©e des Beaux-Arts"]})
    assert got == {"fr": ["Musée des Beaux-Arts", "MusÃ©e des Beaux-Arts"]}
    # Text that is not garbled is left exactly as published (quotes, ligatures, dashes).
    assert lang_map({"en": ["A “quoted” ﬁne text—ok"]}) == {"en": ["A “quoted” ﬁne text—ok"]}


def _v3(**extra: object) -> dict[str, object]:
    doc = manifest("https://example.org/m", ["https://example.org/i.jpg"])
    doc.update(extra)
    return doc


def test_licence_only_inside_the_required_statement_or_attribution() -> None:
    cc = "https://creativecommons.org/licenses/by/4.0/"
    req = {"label": {"en": ["Attribution"]}, "value": {"en": [f'Museum X, <a href="{cc}">CC BY 4.0</a>']}}
    (r3,) = parse_manifest(_v3(requiredStatement=req), collection="t").records
    assert r3.rights == cc and r3.required_statement is not None
    v2 = json.loads((Path(__file__).parent / "data" / "v2-attribution-licence.json").read_text())
    (r2,) = parse_manifest(v2, collection="t").records
    assert r2.rights == "http://rightsstatements.org/vocab/NoC-US/1.0/"
    # An explicit rights value still wins.
    (own,) = parse_manifest(
        _v3(requiredStatement=req, rights="http://rightsstatements.org/vocab/InC/1.0/"), collection="t"
    ).records
    assert own.rights == "http://rightsstatements.org/vocab/InC/1.0/"


def test_logo_only_providers_get_a_label() -> None:
    provider = {
        "id": "https://www.library.example/",
        "type": "Agent",
        "logo": [{"id": "https://cdn.example/l.png", "type": "Image"}],
    }
    (r3,) = parse_manifest(_v3(provider=[provider]), collection="t").records
    assert r3.providers[0].label == {"none": ["library.example"]}
    v2 = json.loads((Path(__file__).parent / "data" / "v2-attribution-licence.json").read_text())
    v2.pop("attribution")
    v2["logo"] = "https://images.museum.example/logo.png"
    (r2,) = parse_manifest(v2, collection="t").records
    assert r2.providers[0].label == {"none": ["images.museum.example"]}
