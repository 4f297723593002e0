"""ImageNet class prototypes as pseudo-pairs: what keeps the heads aware of photographs.

One 1280-d feature per ImageNet class, optimised so the image tower's own classifier assigns it to that
class, paired with the text features of "a photo of a {class}." templates; mixed into every epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from iconosearch.training.contrastive import PairFeatures

PROTOTYPE_TEMPLATES: Final = ("a photo of a {}.", "a picture of a {}.", "a close-up photo of the {}.")


def class_short_names() -> list[str]:
    """First synonym of each ImageNet class (``"tabby, tabby cat"`` → ``"tabby"``)."""
    from iconosearch.models.lite import imagenet_class_names

    return [name.split(",")[0].strip() for name in imagenet_class_names()]


def prototype_image_features(
    weight: np.ndarray, bias: np.ndarray, start: np.ndarray, *, steps: int = 150, pull: float = 0.05
) -> np.ndarray:
    """One 1280-d feature per ImageNet class that the tower's own classifier assigns to that class.

    Gradient ascent on the class's log-softmax from ``start`` (the mean clip-art feature), with an L2 pull
    back to it so prototypes stay in the region real features occupy; clamped to ReLU6's range [0, 6].
    """
    import torch

    w = torch.from_numpy(weight).float()
    b = torch.from_numpy(bias).float()
    origin = torch.from_numpy(start).float().expand(w.shape[0], -1).clone()
    x = origin.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.05)
    target = torch.arange(w.shape[0])
    for _ in range(steps):
        logits = x @ w.T + b
        loss = (
            torch.nn.functional.cross_entropy(logits, target) + pull * ((x - origin) ** 2).sum(dim=1).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0.0, 6.0)
    return x.detach().numpy().astype(np.float32)


@dataclass(frozen=True, slots=True)
class Prototypes:
    image: np.ndarray
    """(1000, 1280) class prototype features."""
    text: np.ndarray
    """(1000, n_templates, 384) MiniLM features of the templated class names."""
    noise: np.ndarray
    """(1280,) per-dimension std of real features; scales the Gaussian noise added to prototypes."""

    def sampler(
        self, per_epoch: int, noise_scale: float = 0.5
    ) -> Callable[[int, np.random.Generator], PairFeatures]:
        def sample(_epoch: int, rng: np.random.Generator) -> PairFeatures:
            classes = rng.integers(0, self.image.shape[0], per_epoch)
            templates = rng.integers(0, self.text.shape[1], per_epoch)
            image = self.image[classes] + rng.normal(0.0, 1.0, (per_epoch, self.image.shape[1])) * (
                noise_scale * self.noise
            )
            return PairFeatures(
                np.clip(image, 0.0, 6.0).astype(np.float32), self.text[classes, templates].astype(np.float32)
            )

        return sample
