"""Dynamic padding (issue 16 item 1): texts are padded to the longest in the batch, never to the context
length, and that changes nothing but the cost.

The reference is the padded computation itself (all 64 / 77 positions through the tower); the trimmed
path must agree with it to 1e-5 on unit vectors (observed differences are ~1e-7, far from the bound).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from iconosearch.models.embedder import LiteEmbedder, encode_clip_text, load_embedder
from iconosearch.models.lite import trim_padding

pytestmark = pytest.mark.slow

TEXTS = [
    "a sailing ship in a storm",
    "x",
    "portrait of a woman with a pearl earring, seated by a window, in the manner of Vermeer",
    "Stillleben mit Früchten und einem Hund",
]


def unit(x: torch.Tensor) -> np.ndarray:
    v = x.float().numpy()
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_trim_padding_cuts_to_the_longest_text() -> None:
    tokens = torch.tensor([[5, 6, 7, 0, 0, 0], [5, 0, 0, 0, 0, 0]])
    cut, mask = trim_padding(tokens, 0)
    assert cut.tolist() == [[5, 6, 7], [5, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_lite_minilm_trimmed_equals_padded() -> None:
    # The English model kept as a baseline has the MiniLM tower (the default's USE-m3 takes raw strings).
    folder = Path(__file__).resolve().parents[1] / "bench" / "baselines" / "iconosearch-lite-en"
    embedder = load_embedder(f"local-dir:{folder}", device="cpu", text_runtime="torch")
    assert isinstance(embedder, LiteEmbedder) and embedder.lite.text_tower is None
    text = embedder.lite.clip.text
    tokens = embedder.tokenizer(TEXTS)
    assert tokens.shape[1] == embedder.lite.config.context_length  # the tokenizer pads to 64
    with torch.inference_mode():
        mask = (tokens != text.config.pad_token_id).long()
        padded = text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)
        trimmed = embedder.lite.text_features(tokens)
        one_by_one = torch.cat([embedder.lite.text_features(embedder.tokenizer([t])) for t in TEXTS])
    np.testing.assert_allclose(unit(trimmed), unit(padded), atol=1e-5)
    np.testing.assert_allclose(unit(one_by_one), unit(padded), atol=1e-5)


def test_open_clip_trimmed_equals_padded() -> None:
    import open_clip

    torch.manual_seed(0)  # random weights: no hub; the check is about the arithmetic, not the model
    model = open_clip.create_model("RN50", pretrained=None).eval()
    tokens = open_clip.get_tokenizer("RN50")(TEXTS)
    assert tokens.shape[1] == 77
    seen: list[int] = []
    model.transformer.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    with torch.inference_mode():
        padded = model.encode_text(tokens)
        trimmed = encode_clip_text(model, tokens)
    longest = int((tokens != 0).sum(dim=1).max())
    assert seen == [77, longest]  # the trimmed pass really ran on fewer positions
    np.testing.assert_allclose(unit(trimmed), unit(padded), atol=1e-5)
