"""ICONCLASS in the product: resolving notations, suggestions, and subject queries through the API (a real
uvicorn server) and the CLI, all against the real data of the ``iconclass`` package."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("iconclass")

from iconosearch.api.app import create_app
from iconosearch.config import LimitsConfig, ServerConfig, Settings
from iconosearch.index.ranking import fts_any_expression
from iconosearch.query import Query, Term
from iconosearch.subjects import (
    UnknownSubjectError,
    expand_subjects,
    parse_subject_ref,
    split_subject_refs,
    vocabulary,
)
from iconosearch.subjects.iconclass import Iconclass
from tests.helpers.browser import live_server
from tests.helpers.demo_index import DemoIndex, shared_demo_index

pytestmark = pytest.mark.slow

# The apple in the five languages, as ICONCLASS's own texts and keywords spell it (human translations).
APPLE = {"en": "apple", "de": "Apfel", "fr": "pomme", "it": "mela", "pt": "maçã"}
APPLE_LABEL = {
    "en": "fruits: apple",
    "de": "Früchte: Apfel",
    "fr": "fruits : pomme",
    "it": "frutti: mela",
    "pt": "frutos: maçã",
}


@pytest.fixture(scope="module")
def iconclass() -> Iconclass:
    vocab = vocabulary("iconclass")
    assert isinstance(vocab, Iconclass)
    return vocab


# --------------------------------------------------------------------------- vocabulary


def test_resolves_a_notation_to_its_text_in_each_language(iconclass: Iconclass) -> None:
    for lang, label in APPLE_LABEL.items():
        subject = iconclass.resolve("25G21(APPLE)", lang)
        assert (subject.notation, subject.text, subject.language) == ("25G21(APPLE)", label, lang)
        assert subject.keywords[0] == APPLE[lang]  # the query language's keywords first
        assert set(APPLE.values()) <= set(subject.keywords)  # then every other language's
    george = iconclass.resolve("11h(george)", "de")  # case-insensitive input, canonical output
    assert george.notation == "11H(GEORGE)"
    assert george.text.startswith("der Kriegerheilige und Erzmärtyrer Georg")
    # a language ICONCLASS has no texts for falls back to English, and says so
    assert iconclass.resolve("25G21(APPLE)", "nl").language == "en"


def test_refuses_unknown_and_network_only_notations(iconclass: Iconclass) -> None:
    with pytest.raises(UnknownSubjectError, match="not an ICONCLASS notation"):
        iconclass.resolve("99ZZ(NOTHING)")
    with pytest.raises(UnknownSubjectError, match="Wikidata"):
        iconclass.resolve("11H(wd:Q48438)")
    with pytest.raises(UnknownSubjectError, match="not a subject notation"):
        parse_subject_ref("iconclass:)(")


@pytest.mark.parametrize(("lang", "typed"), sorted(APPLE.items()))
def test_suggests_the_apple_in_each_language(iconclass: Iconclass, lang: str, typed: str) -> None:
    found = iconclass.suggest(typed, lang, limit=3)
    assert [s.notation for s in found][:3].count("25G21(APPLE)") == 1, found
    apple = next(s for s in found if s.notation == "25G21(APPLE)")
    assert (apple.label, apple.label_language, apple.matched_language) == (APPLE_LABEL[lang], lang, lang)


def test_suggestions_are_ranked_and_labelled_in_the_requested_language(iconclass: Iconclass) -> None:
    assert iconclass.suggest("poire", "fr")[0].notation == "25G21(PEAR)"
    assert iconclass.suggest("Pfirsich", "de")[0].notation == "25G21(PEACH)"
    assert iconclass.suggest("Segelschiff", "de")[0].notation == "46C24"
    assert iconclass.suggest("Vierge Enfant", "fr")[0].notation == "11F4"
    # typed in German, labelled in Italian; accents and case do not matter
    first = iconclass.suggest("georg drachen", "it")[0]
    assert (first.notation, first.label_language, first.matched_language) == ("11H(GEORGE)", "it", "de")
    assert first.label.startswith("San Giorgio")
    # prefixes complete the word being typed
    assert "25G21(PEAR)" in [s.notation for s in iconclass.suggest("pea", "en", limit=50)]
    assert iconclass.suggest("a", "en") == []
    scores = [s.score for s in iconclass.suggest("horse", "en", limit=20)]
    assert scores == sorted(scores, reverse=True)


# --------------------------------------------------------------------------- query expansion


def test_subject_references_in_text_are_found() -> None:
    rest, refs = split_subject_refs("iconclass:25G21(APPLE) on a table ICONCLASS:11H(JOHN THE BAPTIST)")
    assert rest == "on a table"
    assert refs == [("iconclass", "25G21(APPLE)"), ("iconclass", "11H(JOHN THE BAPTIST)")]
    assert split_subject_refs("a map: the world") == ("a map: the world", [])


def test_expansion_gives_text_in_the_query_language_and_keywords(iconclass: Iconclass) -> None:
    query = Query(terms=(Term("text", "iconclass:25G21(APPLE) on a table"), Term("text", "x", -0.5)))
    german = expand_subjects(Query(terms=query.terms, language="de"))
    assert german.terms == (
        Term("text", "on a table"),
        Term("text", "Früchte: Apfel"),
        Term("text", "x", -0.5),
    )
    assert german.keyword_any[0] == "Apfel" and "apple" in german.keyword_any
    assert expand_subjects(query).terms[1] == Term("text", "fruits: apple")  # no language: English
    body = expand_subjects(Query(terms=(Term("subject", "iconclass:46C24", 2.0),), language="fr"))
    assert body.terms == (Term("text", iconclass.resolve("46C24", "fr").text, 2.0),)
    plain = Query(terms=(Term("text", "a ship"),))
    assert expand_subjects(plain) is plain


def test_any_expression_quotes_every_phrase() -> None:
    assert fts_any_expression(["apple", "St", 'George "the" (St.)']) == (
        '"apple"* OR "St" OR "George the St"'
    )
    assert fts_any_expression(["...", ""]) is None


# --------------------------------------------------------------------------- API, on a real server

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    return shared_demo_index(tmp_path_factory)


@pytest.fixture(scope="module")
def api(demo: DemoIndex, iconclass: Iconclass) -> Iterator[httpx.Client]:
    settings = Settings(
        data_dir=demo.data_dir, server=ServerConfig(public_url=None), limits=LimitsConfig(k_max=50)
    )
    with (
        live_server(create_app(settings, reload_interval_s=0), demo.port) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield client


def test_suggest_endpoint(api: httpx.Client) -> None:
    for lang, typed in APPLE.items():
        r = api.get("/api/iconclass/suggest", params={"q": typed, "lang": lang, "limit": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["q"], body["lang"]) == (typed, lang)
        apple = next(s for s in body["suggestions"] if s["notation"] == "25G21(APPLE)")
        assert apple["ref"] == "iconclass:25G21(APPLE)"
        assert (apple["label"], apple["label_language"]) == (APPLE_LABEL[lang], lang)
    assert api.get("/api/iconclass/suggest", params={"q": "x"}).json()["suggestions"] == []
    r = api.get("/api/iconclass/suggest", params={"q": "apple", "limit": 500})
    assert r.status_code == 422


def test_notation_endpoint(api: httpx.Client) -> None:
    r = api.get("/api/iconclass/11H(GEORGE)", params={"lang": "fr"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ref"] == "iconclass:11H(GEORGE)" and body["label_language"] == "fr"
    assert body["label"].startswith("Georges")
    assert body["keywords"][0] == "Georges (St)"  # the requested language's first
    assert {"George (St.)", "dragon"} <= set(body["keywords"])
    r = api.get("/api/iconclass/99ZZ(NOTHING)")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "unknown-subject"


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


def test_iconclass_in_q_and_as_subject_term_search_the_same(api: httpx.Client) -> None:
    params = {"q": "iconclass:25G21(APPLE)", "qlang": "de", "k": 10}
    via_q = _ids(api.get("/api/search", params=params))
    via_term = _ids(
        api.post(
            "/api/search",
            json={
                "terms": [{"kind": "subject", "value": "iconclass:25G21(APPLE)"}],
                "language": "de",
                "k": 10,
            },
        )
    )
    via_subjects = _ids(
        api.post("/api/search", json={"subjects": ["25G21(APPLE)"], "language": "de", "k": 10})
    )
    assert via_q and via_q == via_term == via_subjects
    r = api.get("/api/search", params={"q": "iconclass:99ZZ(NOTHING)"})
    assert r.status_code == 400 and r.json()["code"] == "unknown-subject"


def test_subject_keywords_match_captions(api: httpx.Client, demo: DemoIndex, iconclass: Iconclass) -> None:
    """A subject whose keyword is a word of some caption finds that record by keywords alone (a
    ``min_score`` no image reaches leaves only the keyword ranking), and only records with a keyword."""
    for record in demo.records:
        caption = " ".join(t for texts in record.caption.values() for t in texts)
        for word in re.findall(r"[^\W\d_]{4,}", caption):
            found = [s for s in iconclass.suggest(word, "en", 5) if s.matched.casefold() == word.casefold()]
            if found:
                break
        else:
            continue
        break
    else:
        pytest.skip("no caption word of this index is an ICONCLASS keyword")
    subject = iconclass.resolve(found[0].notation)
    r = api.get("/api/search", params={"q": subject.ref, "min_score": 1.0, "k": 50})
    ids = _ids(r)
    assert record.id in ids
    by_id = {rec.id: rec for rec in demo.records}
    patterns = [re.compile(r"\b" + re.escape(k.split("(")[0].strip()), re.I) for k in subject.keywords]
    for rid in ids:
        text = " ".join(t for texts in by_id[rid].caption.values() for t in texts)
        assert any(p.search(text) for p in patterns if p.pattern != r"\b"), (rid, text)


# --------------------------------------------------------------------------- CLI


def test_cli_search_with_a_notation(demo: DemoIndex, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from iconosearch.cli import app

    config = tmp_path / "iconosearch.toml"
    config.write_text(f'data_dir = "{demo.data_dir}"\n')
    runner = CliRunner()
    ok = runner.invoke(
        app,
        ["--config", str(config), "--json", "search", "iconclass:25G21(APPLE)", "--lang", "fr", "-k", "3"],
    )
    assert ok.exit_code == 0, ok.output
    assert len(json.loads(ok.stdout)["results"]) == 3
    bad = runner.invoke(app, ["--config", str(config), "search", "iconclass:99ZZ(NOTHING)"])
    assert bad.exit_code == 2
    assert "not an ICONCLASS notation" in bad.output
