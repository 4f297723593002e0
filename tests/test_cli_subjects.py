"""Catalogue and machine-suggested subjects from the command line, on a real small index built with
suggestions on (the index builder with ICONCLASS label vectors from the real ``iconclass`` data):
``iconosearch item ID`` and ``iconosearch search --suggested-division … --facets``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iconosearch.cli import app
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import BuildOptions, EmbeddedRecord, write_version
from iconosearch.records import MetadataPair
from iconosearch.subjects import vocabulary
from iconosearch.subjects.iconclass import Iconclass
from iconosearch.subjects.suggested import load_labels
from tests.helpers.index_data import MODEL, HashEmbedder, make_record

# (pictured notation, the catalogue's own subject): divisions 2, 1, 2, 4.
PICTURED = (
    ("25G21(APPLE)", "apples"),
    ("11H(GEORGE)", "Saint George"),
    ("25F23(LION)", "lions"),
    ("46C2", "travel"),
)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[EmbeddedRecord]]]:
    """Records whose image vector is exactly the text vector of one notation each, so that notation is
    their best suggestion (score 1), with their catalogue subject as ``Subject`` metadata."""
    vocab = vocabulary("iconclass")
    assert isinstance(vocab, Iconclass)
    data_dir = tmp_path_factory.mktemp("cli-subjects")
    labels = load_labels(HashEmbedder(), data_dir / "labels", lambda: vocab)
    items = []
    for i, (notation, subject) in enumerate(PICTURED):
        pair = MetadataPair(label={"en": ["Subject"]}, value={"none": [subject]})
        record = dataclasses.replace(make_record(i), metadata=(pair,))
        items.append(EmbeddedRecord(record, f"h{i}", labels.vectors[labels.notations.index(notation)]))
    store = IndexStore(data_dir / "indexes", "default")
    write_version(store, items, MODEL, options=BuildOptions(subject_labels=labels))
    config = data_dir / "iconosearch.toml"
    config.write_text(f'data_dir = "{data_dir}"\nmodel = "test-hash"\n')
    yield config, items


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_item_prints_catalogue_and_machine_suggested_subjects_apart(
    index: tuple[Path, list[EmbeddedRecord]],
) -> None:
    config, items = index
    george = items[1].record
    code, out = run(config, "item", george.id)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:3] == [
        "Item 1",
        f"id {george.id} · collection {george.collection}",
        "Catalogue subjects: Saint George",
    ]
    assert lines[3].rstrip() == "Suggested subjects (machine, ICONCLASS; not the catalogue's)"
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 5  # the five suggestions, best first
    first = [cell.strip() for cell in rows[0].strip("│").split("│")]
    assert first == ["1", "11H(GEORGE)", "the warrior martyr George (Georgius)", "1.000"]
    assert "Saint George" not in "\n".join(lines[3:]), "the catalogue's subject is not a suggestion"


def test_item_labels_suggestions_in_the_asked_language(index: tuple[Path, list[EmbeddedRecord]]) -> None:
    config, items = index
    code, out = run(config, "item", items[0].record.id, "--lang", "de")
    assert code == 0, out
    assert "Catalogue subjects: apples" in out
    assert "25G21(APPLE)" in out and "Früchte: Apfel" in out and "fruits: apple" not in out


def test_item_json_is_the_api_document(index: tuple[Path, list[EmbeddedRecord]]) -> None:
    from iconosearch.api.schemas import Item

    config, items = index
    code, out = run(config, "--json", "item", items[2].record.id)
    assert code == 0, out
    doc = json.loads(out)
    Item.model_validate(doc)
    suggested = doc["suggested_subjects"]
    assert [s["source"] for s in suggested] == ["machine"] * 5
    assert suggested[0]["notation"] == "25F23(LION)" and suggested[0]["division"] == "2"
    assert doc["metadata"] == [{"label": {"en": ["Subject"]}, "value": {"none": ["lions"]}}]


def test_unknown_item_is_a_clear_error(index: tuple[Path, list[EmbeddedRecord]]) -> None:
    config, _ = index
    code, out = run(config, "item", "0123456789abcdef")
    assert code == 1 and "no image '0123456789abcdef'" in out


def test_search_filters_by_suggested_division_and_prints_the_facet(
    index: tuple[Path, list[EmbeddedRecord]],
) -> None:
    config, items = index
    apple, george, lion, travel = (i.record.id for i in items)
    code, out = run(config, "--json", "search", "--item", apple, "--suggested-division", "1,4")
    assert code == 0, out
    doc = json.loads(out)
    assert {r["id"] for r in doc["results"]} == {george, travel}
    assert doc["facets"]["suggested_division"] == {"1": 1, "4": 1}

    code, out = run(
        config, "search", "--item", apple, "--suggested-division", "2", "--facets", "--lang", "it"
    )
    assert code == 0, out
    assert apple in out and lion in out and george not in out and travel not in out
    facet_rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│ suggested_division")
    ]
    assert facet_rows == [["suggested_division", "2 natura (machine-suggested)", "2"]]
    assert "│ collection" in out and "│ rights" in out


def test_a_bad_division_is_refused(index: tuple[Path, list[EmbeddedRecord]]) -> None:
    config, items = index
    code, out = run(config, "search", "--item", items[0].record.id, "--suggested-division", "12")
    assert code == 2 and "'12' is not an ICONCLASS top-level division 0-9" in out


def test_subjects_suggest_autocompletes_like_the_api(index: tuple[Path, list[EmbeddedRecord]]) -> None:
    from iconosearch.api.schemas import SubjectSuggestions

    config, _ = index
    code, out = run(config, "subjects", "suggest", "Apfel", "--lang", "de", "-k", "3")
    assert code == 0, out
    rows = [
        [c.strip() for c in line.strip("│").split("│")] for line in out.splitlines() if line.startswith("│")
    ]
    assert rows[0] == ["25G21(APPLE)", "Früchte: Apfel", "Apfel (de)"]
    assert [r[0] for r in rows if r[0]] == ["25G21(APPLE)", "25GG21(APPLE)", "11F731"]  # long labels wrap
    code, out = run(config, "--json", "subjects", "suggest", "pomme", "--lang", "fr")
    assert code == 0, out
    doc = SubjectSuggestions.model_validate_json(out)
    top = doc.suggestions[0]
    assert (top.ref, top.label, top.label_language) == ("iconclass:25G21(APPLE)", "fruits : pomme", "fr")
    code, out = run(config, "subjects", "suggest", "zzzzqq")
    assert code == 0 and "no ICONCLASS subject matches 'zzzzqq'" in out


def test_subjects_show_one_notation(index: tuple[Path, list[EmbeddedRecord]]) -> None:
    config, _ = index
    code, out = run(config, "subjects", "show", "iconclass:11h(GEORGE)", "--lang", "it")
    assert code == 0, out
    first = out.splitlines()[0]
    assert first.startswith("iconclass:11H(GEORGE)  ") and first.endswith("(it)")
    assert "keywords: " in out and "George" in out
    code, out = run(config, "subjects", "show", "99ZZ")
    assert code == 2 and "'99ZZ' is not an ICONCLASS notation" in out
