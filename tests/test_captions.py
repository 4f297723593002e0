"""The caption rule: labels, summary and chosen metadata per language; page labels dropped."""

from __future__ import annotations

import pytest

from iconosearch.captions import MAX_CHARS, build_caption, clean_canvas_label
from iconosearch.records import ImageRecord, MetadataPair


def record(**fields: object) -> ImageRecord:
    return ImageRecord(id="0", collection="c", manifest_id="m", canvas_id="c1", image_id="i", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("f. 1r", None),
        ("fol. 12v", None),
        ("p. 12", None),
        ("[3]", None),
        ("12r", None),
        ("xii", None),
        ("Recto", None),
        ("front cover", None),
        ("IMG_0012.jpg", None),
        ("File:Gustave Courbet - Bonjour Monsieur Courbet.jpg", None),
        ("f. 033v-034r [Chilpéric Ier tue Galswinthe]", "Chilpéric Ier tue Galswinthe"),
        ("Plate 3. A view of Rome", "A view of Rome"),
        ("fol. 2v: Initial with a dragon", "Initial with a dragon"),
        ("Dim light over the harbour", "Dim light over the harbour"),
        ("Mid-day", "Mid-day"),
    ],
)
def test_canvas_label_cleaning(label: str, expected: str | None) -> None:
    assert clean_canvas_label(label) == expected


def test_caption_per_language_and_field_choice() -> None:
    r = record(
        canvas_label={"none": ["f. 3r"]},
        manifest_label={"en": ["Book of Hours"], "fr": ["Livre d'heures"]},
        summary={"en": ["Illuminated manuscript."]},
        metadata=(
            MetadataPair(label={"en": ["Subject"], "fr": ["Sujet"]}, value={"none": ["Prayer books"]}),
            MetadataPair(label={"en": ["Shelfmark"]}, value={"none": ["MS 12"]}),
            MetadataPair(label={"de": ["Title"]}, value={"de": ["Stundenbuch"]}),
        ),
    )
    cap = build_caption(r)
    assert cap["en"] == ["Book of Hours. Illuminated manuscript. Prayer books"]
    assert cap["fr"] == ["Livre d'heures. Prayer books"]
    assert cap["de"] == ["Stundenbuch. Prayer books"]  # fields in configured order: title, …, subject
    assert "MS 12" not in " ".join(v for vals in cap.values() for v in vals)
    shelf = build_caption(r, fields=["shelfmark"])
    assert "MS 12" in shelf["en"][0] and "Prayer books" not in shelf["en"][0]


def test_caption_without_languages_and_repeats() -> None:
    r = record(
        canvas_label={"none": ["The Harbour at Dawn"]},
        manifest_label={"none": ["The harbour at dawn"]},
        metadata=(MetadataPair(label={"none": ["Title:"]}, value={"none": ["The Harbour at Dawn"]}),),
    )
    assert build_caption(r) == {"none": ["The Harbour at Dawn"]}
    assert build_caption(record()) == {}
    long = build_caption(record(summary={"en": ["word " * 500]}))
    assert len(long["en"][0]) <= MAX_CHARS


def test_untagged_text_does_not_lead_a_tagged_caption() -> None:
    r = record(
        canvas_label={"none": ["Ansicht der Stadt Köln von Süden, kolorierter Kupferstich nach Merian"]},
        manifest_label={"en": ["View of Cologne"]},
    )
    cap = build_caption(r)
    assert cap["en"][0].startswith("View of Cologne. ")
    assert list(cap) == ["en"]  # the language map is kept; no separate "none" caption is invented
