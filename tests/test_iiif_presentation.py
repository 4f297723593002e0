"""What we publish as Presentation 3 obeys the rules the official validator enforces.

Local collections are checked here; ``/api/search.iiif`` in ``test_api.py``. The rules live in
``tests/helpers/presentation3.py``. 0.1 failed them: ``https://`` Creative Commons URIs in ``rights``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from iconosearch.iiif.local import build_local_iiif
from tests.helpers import presentation3


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pics")
    rows = [
        ("cc0.jpg", "https://creativecommons.org/publicdomain/zero/1.0/"),
        ("pdm.jpg", "https://creativecommons.org/publicdomain/mark/1.0/"),
        ("by.jpg", "https://creativecommons.org/licenses/by/4.0/legalcode"),
        ("inc.jpg", "https://rightsstatements.org/page/InC/1.0/?language=en"),
        ("own.jpg", "https://museum.example/our-terms"),
        ("none.jpg", ""),
    ]
    for i, (name, _) in enumerate(rows):
        Image.new("RGB", (300 + 40 * i, 200), (30 * i, 90, 160)).save(folder / name)
    lines = ["file,title,rights,date,subjects"] + [
        f"{name},Bild {name} – é,{rights},1890,a;b" for name, rights in rows
    ]
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("out") / "pics"
    build_local_iiif(folder, out, base_url="https://museum.example/iiif/local/pics", label="Pics")
    return out


def _docs(out: Path) -> dict[str, dict]:
    docs = {"collection.json": json.loads((out / "collection.json").read_text())}
    docs |= {p.name: json.loads(p.read_text()) for p in sorted((out / "manifests").glob("*.json"))}
    return docs


def test_every_local_document_passes_the_presentation_3_rules(published: Path) -> None:
    docs = _docs(published)
    assert len(docs) == 7
    assert {name: presentation3.problems(doc) for name, doc in docs.items()} == {name: [] for name in docs}


def test_rights_are_published_in_the_canonical_http_form(published: Path) -> None:
    rights = {
        doc["label"]["none"][0].split()[1]: doc.get("rights")
        for doc in _docs(published).values()
        if doc["type"] == "Manifest"
    }
    assert rights == {
        "cc0.jpg": "http://creativecommons.org/publicdomain/zero/1.0/",
        "pdm.jpg": "http://creativecommons.org/publicdomain/mark/1.0/",
        "by.jpg": "http://creativecommons.org/licenses/by/4.0/",
        "inc.jpg": "http://rightsstatements.org/vocab/InC/1.0/",
        "own.jpg": None,  # not CC or RightsStatements.org: kept visible as a metadata entry instead
        "none.jpg": None,
    }
    own = next(d for d in _docs(published).values() if d["label"]["none"][0] == "Bild own.jpg – é")
    assert {"label": {"en": ["Rights"]}, "value": {"none": ["https://museum.example/our-terms"]}} in own[
        "metadata"
    ]


def test_the_checker_catches_what_0_1_published() -> None:
    """The rules are not vacuous: 0.1's https rights, a made-up size and a bare string label all fail."""
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": "https://e.example/m",
        "type": "Manifest",
        "label": "plain string",
        "rights": "https://creativecommons.org/publicdomain/mark/1.0/",
        "items": [{"id": "https://e.example/c", "type": "Canvas", "width": 0, "height": 708.5, "items": []}],
    }
    found = presentation3.problems(doc)
    assert any(p.startswith("$.rights") for p in found)
    assert any(p.startswith("$.label") for p in found)
    assert any(p.startswith("$.items[0].width") for p in found)
    assert any(p.startswith("$.items[0].height") for p in found)
