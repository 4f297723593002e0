"""What a fine-tuning run leaves behind: a folder usable as ``local-dir:<folder>``, and ``training.json``.

Lite bases give an iconosearch-lite folder (heads, plus any changed tower weights); open_clip bases give an
open_clip folder (``open_clip_config.json`` + weights + tokenizer files).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iconosearch.training.finetune_config import FinetuneConfig, FinetuneError, FinetuneResult
from iconosearch.training.trainee import Trainee, tower_override_file


def training_summary(result: FinetuneResult, config: FinetuneConfig, trainee: Trainee) -> dict[str, Any]:
    return {
        "format": "iconosearch-finetune/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": {"spec": trainee.base_spec, "fingerprint": trainee.base_fingerprint},
        "spec": result.spec,
        "config": asdict(config),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "base_val_mean_recall": result.base_val_mean_recall,
        "base_val_loss": result.base_val_loss,
        "counts": result.counts,
        "timing": {
            "wall_s": result.wall_s,
            "train_s": result.train_s,
            "feature_s": result.feature_s,
            "examples_per_s": result.examples_per_s,
        },
        "history": [asdict(h) for h in result.history],
    }


def save_model(trainee: Trainee, folder: Path, config: FinetuneConfig, *, best_epoch: int) -> None:
    """Write the fine-tuned model: an iconosearch-lite folder (heads, + changed tower weights) for lite bases,
    an open_clip ``local-dir`` folder (``open_clip_config.json`` + weights + tokenizer) otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if trainee.is_lite:
        from safetensors.torch import save_file

        from iconosearch.models.lite import TOWERS_FILE, head_state, save_lite

        lite = trainee.lite
        extra = {
            **dict(lite.config.extra),
            "finetuned_from": trainee.base_spec,
            "base_fingerprint": trainee.base_fingerprint,
            "finetune_mode": config.mode,
            "best_epoch": best_epoch,
        }
        save_lite(
            folder, replace(lite.config, extra=extra), head_state(lite.clip), class_text=lite.class_text
        )
        heads = set(head_state(lite.clip))
        params = dict(lite.clip.named_parameters())
        # Tower weights the base already changed (a fine-tuned base) carry over, with this run's changes.
        changed = {n for n, p in params.items() if p.requires_grad and n not in heads}
        inherited = tower_override_file(trainee.base_spec)
        if inherited is not None:
            from safetensors import safe_open

            with safe_open(str(inherited), framework="pt") as fh:
                changed |= set(fh.keys())
        towers = {n: params[n].detach().cpu().contiguous() for n in sorted(changed)}
        tower_path = folder / TOWERS_FILE
        if towers:
            save_file(towers, str(tower_path), metadata={"format": "iconosearch-lite-towers/1"})
        else:
            tower_path.unlink(missing_ok=True)
        return
    from safetensors.torch import save_file

    model = trainee.model
    model_cfg = _open_clip_config(trainee.base_spec)
    pp = getattr(model.visual, "preprocess_cfg", {})
    preprocess_cfg = {"mean": list(model.visual.image_mean), "std": list(model.visual.image_std)}
    preprocess_cfg.update({k: pp[k] for k in ("interpolation", "resize_mode") if k in pp})
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n",
        encoding="utf-8",
    )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    inner = getattr(trainee.tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "save_pretrained"):
        inner.save_pretrained(str(folder))


def _open_clip_config(spec: str) -> dict[str, Any]:
    import open_clip

    from iconosearch.models.specs import parse_spec

    parsed = parse_spec(spec)
    name = (
        f"local-dir:{parsed.path}"
        if parsed.kind == "local-dir"
        else parsed.raw
        if parsed.kind == "hf-hub"
        else parsed.name
    )
    cfg = open_clip.get_model_config(name)
    if not cfg:
        raise FinetuneError(f"cannot find the open_clip config of {spec!r} to save the fine-tuned model")
    return dict(cfg)
