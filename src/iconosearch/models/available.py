"""The models one can name as a spec here: the embedded default and well-known hub models, with whether
each works offline on this machine."""

from __future__ import annotations

from typing import Any


def available_models() -> list[dict[str, Any]]:
    """The models ``iconosearch models`` lists (cheap: reads configs, loads no weights).

    One row per model: spec, dim, preprocessing, license, whether it works offline here, description.
    """
    from iconosearch.models.hub import hub_cached
    from iconosearch.models.lite import BUILTIN_DIR, read_checkpoint, tower_files
    from iconosearch.models.specs import (
        KNOWN_HUB_MODELS,
        LITE_NAME,
        ModelUnavailableError,
        hub_offline,
        parse_spec,
    )

    rows: list[dict[str, Any]] = []
    try:
        config, _tensors, _sha = read_checkpoint(BUILTIN_DIR)
        tower_files(config.image_tower)
        lite_ok, dim, prep, note = True, config.dim, config.describe_preprocessing(), ""
    except ModelUnavailableError as exc:
        lite_ok, dim, prep, note = False, None, "-", f" (unavailable: {exc})"
    rows.append(
        {
            "spec": LITE_NAME,
            "dim": dim,
            "preprocessing": prep,
            "license": "heads: Apache-2.0; towers: Apache-2.0 (EfficientNet-Lite0, USE-m3)",
            "offline": lite_ok,
            "description": "embedded default: EfficientNet-Lite0 + USE-m3 (16 languages), LiT heads trained "
            "on public-domain clip art and heritage sets, fused with an ImageNet concept bridge" + note,
        }
    )
    offline = hub_offline()
    for spec, dim, prep, license_, description in KNOWN_HUB_MODELS:
        cached = hub_cached(parse_spec(spec))
        rows.append(
            {
                "spec": spec,
                "dim": dim,
                "preprocessing": prep,
                "license": license_,
                "offline": cached,
                "description": description
                + (
                    ""
                    if cached
                    else " (needs the Hugging Face hub" + (", which is offline)" if offline else ")")
                ),
            }
        )
    return rows
