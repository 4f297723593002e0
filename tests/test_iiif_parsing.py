"""Parsing every real IIIF fixture: records or a typed, explained skip; spot checks of values."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iconosearch.iiif.changes import ChangePage, ChangeStream
from iconosearch.iiif.collection import CollectionPage, parse_collection
from iconosearch.iiif.document import DocumentSkippedError, Skip, describe
from iconosearch.iiif.manifest import ManifestParse, parse_manifest
from iconosearch.iiif.parse import parse_document
from iconosearch.iiif.text import clean_text, lang_map
from iconosearch.records import ImageService, record_from_dict, record_to_dict
from tests.conftest import IIIF_FIXTURES, shared_missing

# Without ../shared, one stand-in parameter whose test skips (or, with CI=true, fails) instead of none.
FIXTURES = sorted(IIIF_FIXTURES.glob("*/*.json")) or [IIIF_FIXTURES / "absent" / "absent.json"]
SKIP_REASONS = {
    "unsupported-version",
    "wrong-kind",
    "malformed",
    "no-canvases",
    "no-image",
    "not-an-image",
    "no-image-url",
    "duplicate",
}


def load(fixtures: Path, rel: str) -> Any:
    return json.loads((fixtures / rel).read_text(encoding="utf-8"))


def manifest(fixtures: Path, rel: str) -> ManifestParse:
    return parse_manifest(load(fixtures, rel), collection="test")


def test_fixture_count(iiif_fixtures: Path) -> None:
    assert len(list(iiif_fixtures.glob("*/*.json"))) == 114


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_parses_or_is_explained(path: Path) -> None:
    if not path.is_file():
        shared_missing()
    doc = json.loads(path.read_text(encoding="utf-8"))
    parsed = parse_document(doc, collection="test", url=f"https://example.org/{path.name}")
    result = parsed.result
    if isinstance(result, Skip):
        assert result.reason in SKIP_REASONS
        assert len(result.detail) > 10
        return
    if isinstance(result, ManifestParse):
        # A manifest yields records, or every canvas it has is skipped with a reason.
        assert result.records or result.skips
        assert len(result.records) + sum(s.reason != "duplicate" for s in result.skips) >= result.canvases
        for skip in result.skips:
            assert skip.reason in SKIP_REASONS and skip.detail
        ids = [r.id for r in result.records]
        assert len(ids) == len(set(ids))
        for r in result.records:
            assert r.service is not None or r.static_url
            assert r.manifest_id == result.manifest_id
        for r in result.records[:3]:
            assert record_from_dict(json.loads(json.dumps(record_to_dict(r)))) == r
    elif isinstance(result, CollectionPage):
        assert result.id
    elif isinstance(result, ImageService):
        assert result.api_version in (1, 2, 3)
    else:
        assert isinstance(result, ChangeStream | ChangePage)


def test_fixture_kinds(iiif_fixtures: Path) -> None:
    results = [
        parse_document(json.loads(p.read_text()), collection="t", url=f"https://x.org/{p.name}").result
        for p in sorted(iiif_fixtures.glob("*/*.json"))
    ]
    manifests = [r for r in results if isinstance(r, ManifestParse)]
    records = sum(len(m.records) for m in manifests)
    skips = [r for r in results if isinstance(r, Skip)]
    assert sum(isinstance(r, CollectionPage) for r in results) == 22
    assert sum(isinstance(r, ImageService) for r in results) == 16
    assert len(manifests) == 68
    assert records > 6000
    assert sorted(s.reason for s in skips) == [
        "malformed",
        "unsupported-version",
        "unsupported-version",
        "unsupported-version",
        "wrong-kind",
        "wrong-kind",
    ]


def test_language_maps_preserved(iiif_fixtures: Path) -> None:
    r = manifest(iiif_fixtures, "manifest-v3/cookbook-0006-text-language.json").records[0]
    assert r.manifest_label == {"en": ["Whistler's Mother"], "fr": ["La Mère de Whistler"]}
    assert r.metadata[0].label == {"en": ["Creator"], "fr": ["Auteur"]}
    assert r.metadata[0].value == {"none": ["Whistler, James Abbott McNeill"]}
    assert set(r.caption) == {"en", "fr"}
    assert r.caption["fr"][0].startswith("La Mère de Whistler")
    assert "Whistler, James" not in r.caption["en"][0]  # Creator is not a caption field by default


def test_v2_language_objects(iiif_fixtures: Path) -> None:
    r = manifest(iiif_fixtures, "manifest-v2/nlw-welsh-book-of-remembrance.json").records[0]
    assert r.required_statement is not None
    assert r.required_statement.value == {
        "en": ["Welsh Centre for International Affairs"],
        "cy-GB": ["Canolfan Materion Rhyngwladol Cymru"],
    }
    nlw = manifest(iiif_fixtures, "manifest-v2/nlw-yr-ardd.json").records[0]
    assert nlw.metadata[0].label == {"en": ["Title"], "cy-GB": ["Teitl"]}
    assert nlw.date is not None and nlw.date.start_year == 1864 and nlw.date.source == "navDate"


def test_html_sanitised_and_rights(iiif_fixtures: Path) -> None:
    r = manifest(iiif_fixtures, "manifest-v3/cookbook-0007-string-formats.json").records[0]
    assert r.rights == "http://creativecommons.org/licenses/by-sa/3.0/"
    assert r.required_statement is not None
    text = r.required_statement.value["en"][0]
    assert "<" not in text and "Glen Robson" in text
    for pairs in (r.metadata, [r.required_statement]):
        for pair in pairs:
            for values in pair.value.values():
                assert all("<" not in v and "&amp;" not in v for v in values)


def test_provider_and_logo(iiif_fixtures: Path) -> None:
    r = manifest(iiif_fixtures, "manifest-v3/cookbook-0234-provider.json").records[0]
    (p,) = r.providers
    assert p.label == {"en": ["UCLA Library"]}
    assert p.homepage == "https://digital.library.ucla.edu/"
    assert p.logo is not None and p.logo.endswith(".png")
    zedler = manifest(iiif_fixtures, "manifest-v2/bsb-mdz-zedler-universal-lexicon.json")
    assert len(zedler.records) == 916
    assert (
        zedler.records[0].providers[0].logo == "https://api.digitale-sammlungen.de/iiif/images/bsb_logo.png"
    )
    assert zedler.records[0].rights == "http://www.europeana.eu/rights/out-of-copyright-non-commercial/"


def test_placeholder_required_statement_and_part_of(iiif_fixtures: Path) -> None:
    r = manifest(iiif_fixtures, "manifest-v3/bodleian-human-freaks-v3.json").records[0]
    assert r.required_statement is None  # the literal string 'None' is not an attribution
    assert r.part_of == ("Ephemera", "Entertainment Ephemera")


def test_composite_canvas_gives_one_record_per_image(iiif_fixtures: Path) -> None:
    parsed = manifest(iiif_fixtures, "manifest-v3/cookbook-0036-composition.json")
    assert len(parsed.records) == 2
    whole, detail = parsed.records
    assert whole.canvas_id == detail.canvas_id and whole.id != detail.id
    assert whole.region is None
    # The overlay: painted onto that part of the canvas (canvas coordinates), shown whole at its own size.
    assert detail.region == "3949,994,1091,1232" and detail.image_region is None
    assert (detail.width, detail.height) == (2138, 2414)


def test_choices_take_the_default(iiif_fixtures: Path) -> None:
    v2 = manifest(iiif_fixtures, "odd/dlcs-codex-xolotl-body-choice.json")
    assert len(v2.records) == v2.canvases == 19
    assert v2.records[0].image_id.endswith("X.010r_VIS/full/!2000,2000/0/default.jpg")
    v3 = manifest(iiif_fixtures, "manifest-v3/ghent-cuneiform-choices.json")
    assert len(v3.records) == 1


def test_non_image_canvases_are_skipped_with_reasons(iiif_fixtures: Path) -> None:
    audio = manifest(iiif_fixtures, "manifest-v3/bl-soqotri-audio-recordings-ranges.json")
    assert not audio.records and {s.reason for s in audio.skips} == {"not-an-image"}
    missing = manifest(iiif_fixtures, "manifest-v3/cookbook-0283-missing-image.json")
    assert len(missing.records) == 3 and [s.reason for s in missing.skips] == ["no-image"]
    empty = manifest(iiif_fixtures, "manifest-v2/biblissima-florus-dispersus-empty-canvases.json")
    assert len(empty.records) == 238 and sum(s.reason == "no-image" for s in empty.skips) == 84
    ixif = manifest(iiif_fixtures, "odd/wellcome-ixif-born-digital-v2.json")
    assert not ixif.records and ixif.skips[0].reason == "not-an-image"


def test_unsupported_and_malformed_documents(iiif_fixtures: Path) -> None:
    for rel in ("odd/yale-ycba-presentation-1-0.json", "odd/yale-shared-canvas-scroll.json"):
        with pytest.raises(DocumentSkippedError) as err:
            manifest(iiif_fixtures, rel)
        assert err.value.skip.reason == "unsupported-version"
    with pytest.raises(DocumentSkippedError) as err:
        manifest(iiif_fixtures, "odd/v3-context-with-v2-structure.json")
    assert err.value.skip.reason == "malformed"


def test_quirky_documents_still_parse(iiif_fixtures: Path) -> None:
    # Image API context on a manifest (archive.org), no @context at all, '@none' labels (biiif draft).
    ia = manifest(iiif_fixtures, "manifest-v2/internet-archive-principle-of-relativity.json")
    assert ia.version == 2 and len(ia.records) == 265
    assert ia.records[0].service is not None and ia.records[0].service.level == 2
    cats = manifest(iiif_fixtures, "odd/biiif-cats-manifest-draft-v3.json")
    assert cats.version == 3 and len(cats.records) == 8
    assert "none" in cats.records[0].manifest_label
    omeka = manifest(iiif_fixtures, "odd/ugent-omeka-bu29-leaky-metadata.json")
    assert all(isinstance(v, str) for r in omeka.records for vals in r.canvas_label.values() for v in vals)
    typo = manifest(iiif_fixtures, "odd/princeton-figgy-typo-profile-localhost.json").records[0]
    assert typo.service is not None and typo.service.api_version == 2 and typo.service.level == 2


def test_image_service_versions_in_manifests(iiif_fixtures: Path) -> None:
    bnf = manifest(iiif_fixtures, "manifest-v2/biblissima-bnf-francais-5.json").records[0]
    assert bnf.service is not None and bnf.service.api_version == 1
    wellcome = manifest(iiif_fixtures, "manifest-v3/wellcome-pauper-patients-orders.json")
    assert len(wellcome.records) == 319
    assert {r.service.api_version for r in wellcome.records if r.service} == {2}
    static = manifest(iiif_fixtures, "manifest-v3/cookbook-0001-minimal-single-image.json").records[0]
    assert static.service is None and static.static_url and static.static_url.endswith(".png")


def test_collections_nested_paged_and_duplicates(iiif_fixtures: Path) -> None:
    nlw = parse_collection(load(iiif_fixtures, "collection-v2/nlw-yr-ardd-issues.json"))
    assert len(nlw.manifests) == 65  # listed under both 'manifests' and 'members', kept once
    mixed = parse_collection(load(iiif_fixtures, "collection-v2/princeton-members-mixed.json"))
    assert (len(mixed.manifests), len(mixed.collections)) == (1, 1)
    paged = parse_collection(load(iiif_fixtures, "collection-v2/bsb-mdz-top-collection-paged.json"))
    assert paged.first and paged.first.endswith("cursor=initial") and paged.total == 3074231
    page = parse_collection(load(iiif_fixtures, "collection-v2/spec-example-collection-page.json"))
    assert page.next == "http://example.org/iiif/collection/c2" and not page.refs
    v3 = parse_collection(load(iiif_fixtures, "collection-v3/validator-collection-of-collections.json"))
    assert len(v3.collections) == 2 and not v3.manifests
    bdrc = parse_collection(load(iiif_fixtures, "collection-v2/bdrc-kangyur-derge.json"))
    assert (len(bdrc.manifests), len(bdrc.collections)) == (103, 14)
    assert "bo-x-ewts" in bdrc.label


def test_describe_handles_non_objects() -> None:
    assert describe([1, 2]).kind == "unknown"
    assert describe("x").kind == "unknown"
    assert isinstance(parse_document(None, collection="t").result, Skip)
    assert isinstance(parse_document({"foo": 1}, collection="t").result, Skip)


def test_text_cleaning() -> None:
    assert clean_text("<p>A &amp; B</p><p>C<script>alert(1)</script></p>") == "A & B C"
    assert clean_text("  two\n  lines ") == "two lines"
    assert lang_map({"@value": "x", "@language": "de"}) == {"de": ["x"]}
    assert lang_map([{"@value": "a"}, "b", 3]) == {"none": ["a", "b", "3"]}
    assert lang_map({"@none": ["n"], "en": "e"}) == {"none": ["n"], "en": ["e"]}
    assert lang_map({"en": ["<b></b>"]}) == {}
    assert lang_map(None) == {} and lang_map(True) == {}


def test_v2_institution_from_short_attributions(iiif_fixtures: Path) -> None:
    loc = manifest(iiif_fixtures, "manifest-v2/loc-holland-map-sheets.json").records[0]
    assert loc.providers[0].label == {"none": ["Library of Congress"]}
    artic = manifest(iiif_fixtures, "manifest-v2/artic-grande-jatte.json").records[0]
    assert artic.providers[0].label == {"none": ["Art Institute of Chicago"]}
    # A licence text is an attribution, not an institution name: the logo-only provider is named by
    # its logo's host instead of being left without a label.
    cudl = manifest(iiif_fixtures, "manifest-v2/cambridge-cudl-lyttelton-commonplace.json").records[0]
    assert (
        cudl.providers[0].label == {"none": ["cudl.lib.cam.ac.uk"]}
        and cudl.providers[0].logo == "https://cudl.lib.cam.ac.uk/img/cu_logo.png"
    )
    assert cudl.required_statement is not None
    bnf = manifest(iiif_fixtures, "manifest-v2/biblissima-bnf-francais-5.json").records[0]
    assert bnf.providers[0].label == {"none": ["static.biblissima.fr"]}
    assert bnf.rights == "https://creativecommons.org/publicdomain/zero/1.0/"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_KEYS = st.sampled_from(
    [
        "label",
        "items",
        "body",
        "service",
        "sequences",
        "canvases",
        "images",
        "resource",
        "metadata",
        "requiredStatement",
        "attribution",
        "license",
        "rights",
        "provider",
        "navDate",
        "target",
        "on",
        "width",
        "height",
        "profile",
        "sizes",
        "@context",
        "type",
        "@type",
        "id",
        "@id",
        "thumbnail",
        "partOf",
        "within",
        "summary",
        "description",
        "homepage",
        "related",
        "logo",
        "value",
        "selector",
    ]
)


def _mutate(doc: Any, path: list[int], key: str, value: Any) -> Any:
    """Replace ``key`` in the dict reached by following ``path`` (indices into dict values/list items)."""
    node = doc
    for step in path:
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
        nested = [c for c in children if isinstance(c, dict | list)]
        if not nested:
            break
        node = nested[step % len(nested)]
    if isinstance(node, dict):
        node[key] = value
    elif isinstance(node, list) and node:
        node[0] = value
    return doc


@pytest.mark.parametrize(
    "rel",
    [
        "manifest-v3/cookbook-0036-composition.json",
        "odd/dlcs-codex-xolotl-body-choice.json",
        "manifest-v2/stanford-roman-denarius.json",
        "collection-v2/princeton-members-mixed.json",
        "info-json/spec-example-image-2-full.json",
    ],
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.integers(min_value=0, max_value=50), max_size=6), key=_KEYS, value=_json)
def test_mangled_documents_never_raise(
    iiif_fixtures: Path, rel: str, path: list[int], key: str, value: Any
) -> None:
    doc = _mutate(copy.deepcopy(_cached(iiif_fixtures, rel)), path, key, value)
    parsed = parse_document(doc, collection="fuzz", url="https://example.org/doc.json")
    assert parsed.result is not None


_CACHE: dict[str, Any] = {}


def _cached(fixtures: Path, rel: str) -> Any:
    if rel not in _CACHE:
        _CACHE[rel] = load(fixtures, rel)
    return _CACHE[rel]
