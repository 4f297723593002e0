"""A built lite checkpoint against an older one, on the build's own test splits, without training.

The build compares its new model with the baseline it started from (``metrics.json``); a model built in
several steps (0.1 → English heritage model → multilingual default) also needs the comparison with the
first one. This assembles exactly the data ``build_lite`` assembles, with ``inputs.baseline`` as the old
model, and reports the same paired test metrics for the given checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iconosearch.lite.build import BuildInputs, assemble, build_features, encoder, paired_test_metrics
from iconosearch.lite.distil import base_model, base_source
from iconosearch.lite.features import Progress


def compare_checkpoint(
    model_dir: Path | None,
    inputs: BuildInputs,
    *,
    log: Callable[[str], None] = lambda _m: None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Test metrics of ``model_dir`` (the built-in default when None) vs ``inputs.baseline``."""
    from iconosearch.lite.heads import compute_class_text, load_heads

    base_config, base_heads, base_class_text = load_heads(inputs.baseline)
    config, heads, class_text = load_heads(model_dir)
    inputs = dataclasses.replace(inputs, text_tower=config.text_tower, image_tower=config.image_tower)
    base_features = base_source(inputs.cache_dir, base_config, inputs.tower_config())
    data, _split = assemble(inputs, (base_config, base_features), log, progress)
    features = build_features(inputs)
    lite = features.embedder.lite
    # The class-name table the checkpoint ships (what its bridge uses), else the one a build computes.
    lite.class_text = (
        class_text.float()
        if class_text is not None
        else compute_class_text(lite, features.embedder.tokenizer)
    )
    base_lite = base_model(base_config, base_class_text, lite, base_features)
    base_enc = encoder(base_heads, base_lite, base_config.bridge_weight)
    metrics = paired_test_metrics(encoder(heads, lite, config.bridge_weight), base_enc, data)
    metrics["model_bridge_weight"] = config.bridge_weight
    metrics["baseline"] = {"path": inputs.baseline.as_posix(), "bridge_weight": base_config.bridge_weight}
    return metrics
