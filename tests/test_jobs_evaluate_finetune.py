"""The evaluate and fine-tune jobs as library calls: which pairs, which split part, which refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iconosearch.evaluation.jobs import JobError, evaluation_pairs, load_pairs
from iconosearch.training.jobs import SplitRequest, plan_finetune
from tests.helpers.finetune_data import shape_pairs

MAX_PIXELS = 50_000_000


def _pairs_file(tmp_path: Path, variants: int = 7) -> Path:
    rows = [
        {"image": str(p.image_path), "caption": p.captions[0].text, "group": p.group, "collection": "shapes"}
        for p in shape_pairs(tmp_path / "img", variants=variants)
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_unknown_collections_and_no_material_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="name at least one harvested collection"):
        load_pairs(tmp_path, [], None)
    with pytest.raises(JobError, match=r"unknown collection.*nowhere.*harvested ones are none"):
        load_pairs(tmp_path, ["nowhere"], None)


def test_a_finetune_plan_splits_by_manifest_and_its_split_alone_selects_the_test_part(tmp_path: Path) -> None:
    pairs_file = _pairs_file(tmp_path)
    pair_set = load_pairs(tmp_path, [], pairs_file)
    plan = plan_finetune(
        pair_set,
        tmp_path,
        collections=[],
        holdout=[],
        pairs_file=pairs_file,
        split_file=None,
        how=SplitRequest(val_fraction=0.1, test_fraction=0.2, seed=3, min_eval_pairs=10),
        mode="heads",
        name=None,
        output=None,
    )
    assert plan.out_dir == (tmp_path / "models" / "pairs-heads").resolve()
    parts = [{p.group for p in part} for part in (plan.train, plan.val, plan.test)]
    assert len(plan.train) + len(plan.val) + len(plan.test) == len(pair_set.pairs) == 112
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])

    split_file = tmp_path / "split.json"
    plan.split.save(split_file)
    chosen = evaluation_pairs(
        tmp_path, collections=[], pairs_file=None, split_file=split_file, part="test", max_pixels=MAX_PIXELS
    )
    assert {p.item_id for p in chosen.pairs} == {p.item_id for p in plan.test}
    assert chosen.split_name == f"test of {split_file}"


def test_too_few_pairs_and_an_unknown_part_are_refused(tmp_path: Path) -> None:
    pairs_file = _pairs_file(tmp_path, variants=1)
    with pytest.raises(JobError, match="at least 100 pairs"):
        plan_finetune(
            load_pairs(tmp_path, [], pairs_file),
            tmp_path,
            collections=[],
            holdout=[],
            pairs_file=pairs_file,
            split_file=None,
            how=SplitRequest(0.1, 0.1, 0, 10),
            mode="heads",
            name="x",
            output=None,
        )
    with pytest.raises(JobError, match=r"unknown --part 'dev'"):
        evaluation_pairs(
            tmp_path,
            collections=[],
            pairs_file=pairs_file,
            split_file=None,
            part="dev",
            max_pixels=MAX_PIXELS,
        )
