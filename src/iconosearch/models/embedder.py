"""Embedders: one interface over iconosearch-lite and any open_clip model.

``load_embedder(spec)`` returns an :class:`Embedder` whose vectors are float32 and L2-normalised, so inner
product = cosine. Every embedder carries the exact ``spec`` and a ``fingerprint`` (hash of weights +
preprocessing) that indexes record, so vectors of different models are never mixed.

For training, the concrete classes expose the underlying parts: ``OpenClipEmbedder.model`` /
``.preprocess`` / ``.tokenizer`` (an open_clip model, its eval transform and tokenizer); ``LiteEmbedder``
additionally exposes ``.lite`` (:class:`~iconosearch.models.lite.LiteModel`) with frozen-feature access
(``image_feature_batch`` / ``text_feature_batch`` here) for heads-only training on cached features.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from iconosearch.models.specs import (
    ModelSpec,
    ModelUnavailableError,
    parse_spec,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from iconosearch.models.lite import LiteModel


@runtime_checkable
class Embedder(Protocol):
    spec: str
    fingerprint: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited onto white (converting RGBA directly would give black)."""
    from PIL import Image as PILImage

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


class _TorchEmbedder:
    """Shared batching: preprocess → encode → normalise → float32 numpy."""

    spec: str
    fingerprint: str
    dim: int
    device: str
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    batch_size: int = 32

    def _encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        return torch.stack([self.preprocess(_rgb(im)) for im in images])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = self.pixels(images[start : start + self.batch_size]).to(self.device)
                out.append(self._encode_images(batch).float().cpu().numpy())
        return _normalise(np.concatenate(out))

    def embed_image_tensors(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed images already run through ``preprocess`` (n, 3, H, W); the pipeline's fast path (B2)."""
        import torch

        with torch.inference_mode():
            out = self._encode_images(pixels.to(self.device, non_blocking=True))
        return _normalise(out.float().cpu().numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size * 4):
                tokens = self.tokenizer(list(texts[start : start + self.batch_size * 4])).to(self.device)
                out.append(self._encode_texts(tokens).float().cpu().numpy())
        return _normalise(np.concatenate(out))


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class LiteEmbedder(_TorchEmbedder):
    """iconosearch-lite (built in, or a fine-tuned lite checkpoint folder)."""

    def __init__(
        self,
        spec: str,
        lite: LiteModel,
        fingerprint: str,
        device: str,
        tokenizer: Any,
        *,
        text_runtime: str = "torch",
        text_threads: int = 0,
    ) -> None:
        import open_clip

        self.text_runtime = text_runtime
        """``auto`` | ``onnx`` | ``torch`` for the text tower and the image trunk: see
        :func:`iconosearch.models.onnx_text.load_onnx_text`."""
        self.text_threads = text_threads
        self._onnx: Any = None
        self._image_onnx: Any = None
        self._onnx_lock = threading.Lock()
        self.spec = spec
        self.lite = lite
        self.fingerprint = fingerprint
        self.dim = lite.config.dim
        self.device = device
        cfg = lite.config
        self.preprocess = open_clip.image_transform(
            cfg.image_size,
            is_train=False,
            mean=cfg.mean,
            std=cfg.std,
            resize_mode=cfg.resize_mode,
            interpolation=cfg.interpolation,
            fill_color=cfg.fill_color,
        )
        self.tokenizer = tokenizer

    @property
    def model(self) -> Any:
        """The open_clip ``CustomTextCLIP`` (towers frozen, heads trainable)."""
        return self.lite.clip

    def _encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        onnx = self.image_onnx()
        if onnx is None:
            features = self.lite.image_features(pixels)
        else:
            features = torch.from_numpy(onnx.features(pixels)).to(pixels.device)
        return self.lite.embed_image_features(features)

    def image_feature_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Frozen 1280-d tower features (what heads-only training caches), float32."""
        import torch

        with torch.inference_mode():
            return self.lite.image_features(self.pixels(images).to(self.device)).float().cpu().numpy()

    def text_feature_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Frozen text-tower features (MiniLM: 384-d unnormalised mean pooling), float32."""
        import torch

        with torch.inference_mode():
            return self.lite.encode_text_features(texts, self.tokenizer).float().cpu().numpy()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        onnx = self.text_onnx()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size * 4):
                chunk = list(texts[start : start + self.batch_size * 4])
                if onnx is not None:
                    feats = torch.from_numpy(onnx.features(chunk)).to(self.device)
                else:
                    feats = self.lite.encode_text_features(chunk, self.tokenizer)
                out.append(self.lite.embed_text_features(feats).float().cpu().numpy())
        return _normalise(np.concatenate(out))

    def text_onnx(self) -> Any:
        """The text tower on ONNX Runtime (exported on first use), or ``None`` where torch runs it."""
        with self._onnx_lock:
            if self._onnx is None:
                from iconosearch.models.batching import available_cores
                from iconosearch.models.onnx_text import load_onnx_text

                threads = self.text_threads or available_cores()
                runner = load_onnx_text(self.lite, self.tokenizer, runtime=self.text_runtime, threads=threads)
                self._onnx = runner if runner is not None else False
            return self._onnx or None

    def image_onnx(self) -> Any:
        """The image trunk on ONNX Runtime (3x faster than torch on one CPU thread, measured; exported on
        first use), or ``None`` where torch runs it; follows ``text_runtime``."""
        with self._onnx_lock:
            if self._image_onnx is None:
                from iconosearch.models.batching import available_cores
                from iconosearch.models.onnx_text import load_onnx_image

                threads = self.text_threads or available_cores()
                runner = load_onnx_image(self.lite, runtime=self.text_runtime, threads=threads)
                self._image_onnx = runner if runner is not None else False
            return self._image_onnx or None


class OpenClipEmbedder(_TorchEmbedder):
    """Any open_clip model (built-in architecture + tag/file, hf-hub, local-dir)."""

    def __init__(self, spec: str, model: Any, preprocess: Any, tokenizer: Any, device: str) -> None:
        self.spec = spec
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else 0
        self.fingerprint = _state_fingerprint(model, preprocess)
        if not self.dim:
            self.dim = int(self.embed_texts(["dimension probe"]).shape[1])

    def _encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _encode_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        return encode_clip_text(self.model, tokens)


def encode_clip_text(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` with dynamic padding where that is exact, else unchanged.

    open_clip pads every text to the context length (77). In its standard CLIP text tower attention is
    causal (no token sees the padding after it) and argmax/eos pooling reads a position inside the text,
    so cutting the all-padding tail gives the same vectors at a fraction of the cost. Other towers (HF,
    CoCa, first/last pooling) are encoded as they are.
    """
    import open_clip
    import torch

    pool = getattr(model, "text_pool_type", None)
    if type(model) is not open_clip.CLIP or pool not in ("argmax", "eos") or model.attn_mask is None:
        return model.encode_text(tokens)
    # Padding is id 0; keep every column up to the last non-padding token of any text.
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    length = max(1, int(((tokens != 0) * positions).max()))
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = open_clip.transformer.text_global_pool(
        x, tokens, pool, eos_token_id=getattr(model, "text_eos_id", None)
    )
    if model.text_projection is None:
        return x
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection


def _state_fingerprint(model: Any, preprocess: Any) -> str:
    """Hash of the weights and a canonical form of the preprocessing: the same weights loaded two ways
    (``ARCH//file`` or ``local-dir:``) get one fingerprint, so they share caches and indexes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).numpy().view(np.uint8).tobytes())
    digest.update(json.dumps(preprocess_signature(preprocess), sort_keys=True).encode())
    return digest.hexdigest()


def preprocess_signature(preprocess: Any) -> list[Any]:
    """Each transform step as (class name, public settings), with tuples as lists and enums as values:
    ``repr`` is not canonical (mean and std print as a tuple from one loader and a list from another)."""
    steps = getattr(preprocess, "transforms", [preprocess])
    return [
        [type(step).__name__, {k: _canonical(v) for k, v in sorted(vars(step).items()) if _setting(k)}]
        for step in steps
    ]


def _setting(name: str) -> bool:
    return not name.startswith("_") and name != "training"


def _canonical(value: Any) -> Any:
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return type(value).__name__


_CACHE: dict[tuple[str, str, str, int], Embedder] = {}
_LOCK = threading.Lock()
TEXT_RUNTIMES = ("auto", "onnx", "torch")


def load_embedder(
    spec: str, *, device: str | None = None, text_runtime: str = "auto", text_threads: int = 0
) -> Embedder:
    """Load (once per process, per spec, device and text runtime) the embedder a spec names.

    ``text_runtime`` (``auto`` | ``onnx`` | ``torch``, the ``[encoder] runtime`` setting) chooses how an
    iconosearch-lite text tower runs: ``auto`` uses ONNX Runtime where it is installed and the tower kind
    has an export (:mod:`iconosearch.models.onnx_text`), torch otherwise; ``text_threads`` is ORT's
    thread count (0 = one per available core). Other models always run on torch.

    Raises :class:`~iconosearch.models.specs.ModelSpecError` for malformed specs and
    :class:`~iconosearch.models.specs.ModelUnavailableError` when the model cannot be had here (hub model
    offline and not cached, missing files, bad checksums) — quickly, without network retries.
    """
    if text_runtime not in TEXT_RUNTIMES:
        raise ValueError(f"unknown text runtime {text_runtime!r} ({', '.join(TEXT_RUNTIMES)})")
    parsed = parse_spec(spec)
    dev = device or default_device()
    key = (spec, dev, text_runtime, text_threads)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _load(parsed, dev)
            if isinstance(cached, LiteEmbedder):
                # One instance per runtime (the cache key), so setting it here never changes another's.
                cached.text_runtime, cached.text_threads = text_runtime, text_threads
            elif text_runtime == "onnx":
                raise ModelUnavailableError(
                    f"the ONNX text runtime covers iconosearch-lite text towers only, not {spec!r}"
                )
            _CACHE[key] = cached
        return cached


ModelLoader = Callable[[ModelSpec, str], "Embedder"]
"""(parsed spec, device) → the embedder; raises :class:`ModelUnavailableError` with a readable reason."""

_LOADERS: dict[str, ModelLoader] = {}


def register_model_loader(kind: str, loader: ModelLoader) -> None:
    """Make specs of ``kind`` (a spec kind registered in :mod:`~iconosearch.models.specs`) loadable."""
    if kind in _LOADERS:
        raise ValueError(f"model loader for kind {kind!r} is already registered")
    _LOADERS[kind] = loader


def _load(spec: ModelSpec, device: str) -> Embedder:
    loader = _LOADERS.get(spec.kind)
    if loader is None:
        raise ModelUnavailableError(f"no loader for model spec kind {spec.kind!r} ({spec.raw!r})")
    return loader(spec, device)


def _is_lite_dir(path: Path) -> bool:
    from iconosearch.models.lite import CONFIG_FILE, HEADS_FILE

    return (path / CONFIG_FILE).is_file() and (path / HEADS_FILE).is_file()


def _load_lite(spec: ModelSpec, path: Path | None, device: str) -> LiteEmbedder:
    from open_clip.tokenizer import HFTokenizer

    from iconosearch.models.lite import load_lite, tower_files

    lite, fingerprint = load_lite(path, device=device)
    tokenizer = HFTokenizer(
        str(tower_files(lite.config.image_tower, verify=False).text_dir),
        context_length=lite.config.context_length,
    )
    return LiteEmbedder(spec.raw, lite, fingerprint, device, tokenizer)


def _load_embedded_lite(spec: ModelSpec, device: str) -> Embedder:
    return _load_lite(spec, None, device)


def _load_checkpoint(spec: ModelSpec, device: str) -> Embedder:
    """A lite checkpoint (folder or heads file), an open_clip folder, or a bare open_clip weights file whose
    architecture is read from its shapes."""
    from iconosearch.models.lite import CONFIG_FILE

    path = spec.path
    assert path is not None
    if not path.exists():
        raise ModelUnavailableError(f"model checkpoint {path} does not exist")
    if ((path if path.is_dir() else path.parent) / CONFIG_FILE).is_file():
        return _load_lite(spec, path, device)
    if path.is_dir():
        if not (path / "open_clip_config.json").is_file():
            raise ModelUnavailableError(
                f"{path} holds neither an iconosearch-lite model ({CONFIG_FILE}) nor an open_clip one "
                "(open_clip_config.json)"
            )
        return _create_open_clip(spec, f"local-dir:{path}", None, device)
    from iconosearch.models.checkpoints import architecture_of

    return _create_open_clip(spec, architecture_of(path), str(path), device)


def _load_local_dir(spec: ModelSpec, device: str) -> Embedder:
    """A fine-tuned iconosearch-lite folder, or an open_clip folder (config + weights)."""
    assert spec.path is not None
    if _is_lite_dir(spec.path):
        return _load_lite(spec, spec.path, device)
    if not spec.path.is_dir():
        raise ModelUnavailableError(f"local-dir model folder {spec.path} does not exist")
    return _create_open_clip(spec, f"local-dir:{spec.path}", None, device)


def _load_hub(spec: ModelSpec, device: str) -> Embedder:
    from iconosearch.models.hub import require_hub_model

    require_hub_model(spec)
    return _create_open_clip(spec, spec.raw.strip(), None, device)


def _load_open_clip(spec: ModelSpec, device: str) -> Embedder:
    from iconosearch.models.hub import check_architecture, require_hub_model

    check_architecture(spec.name)
    if spec.needs_hub:
        require_hub_model(spec)
    elif spec.path is not None and not spec.path.is_file():
        raise ModelUnavailableError(f"checkpoint file {spec.path} of {spec.raw!r} does not exist")
    return _create_open_clip(spec, spec.name, spec.pretrained, device)


def _create_open_clip(
    spec: ModelSpec, model_name: str, pretrained: str | None, device: str
) -> OpenClipEmbedder:
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device
        )
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:  # open_clip raises RuntimeError/OSError/ValueError variously
        raise ModelUnavailableError(f"cannot load model {spec.raw!r}: {exc}") from exc
    model.eval()
    return OpenClipEmbedder(spec.raw, model, preprocess, tokenizer, device)


register_model_loader("lite", _load_embedded_lite)
register_model_loader("checkpoint", _load_checkpoint)
register_model_loader("local-dir", _load_local_dir)
register_model_loader("hf-hub", _load_hub)
register_model_loader("open_clip", _load_open_clip)


def describe(embedder: Embedder) -> dict[str, Any]:
    """What an index manifest records about its model."""
    return {"spec": embedder.spec, "fingerprint": embedder.fingerprint, "dim": embedder.dim}
