"""`iconosearch finetune` and `iconosearch evaluate` end to end, and their refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iconosearch.cli import app
from iconosearch.evaluation.pairs import Pair
from tests.helpers.finetune_data import FinetuneWorld, finetune_world, shape_pairs  # noqa: F401 - the fixture


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _shape_rows(folder: Path, pairs: list[Pair] | None = None) -> list[dict[str, object]]:
    return [
        {
            "image": str(p.image_path),
            "caption": p.captions[0].text,
            "lang": "en",
            "group": p.group,
            "collection": "shapes",
            "provider": "Test Museum",
        }
        for p in (pairs if pairs is not None else shape_pairs(folder))
    ]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ICONOSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray iconosearch.toml
    return CliRunner()


def test_too_few_pairs_is_refused_with_the_minimum(cli: CliRunner, tmp_path: Path) -> None:
    rows = _shape_rows(tmp_path / "img")[:20]
    rows += [{"image": rows[0]["image"], "caption": ""}, {"image": rows[1]["image"]}]
    pairs = _jsonl(tmp_path / "p.jsonl", rows)
    result = cli.invoke(app, ["finetune", "--pairs", str(pairs), "--model", "iconosearch-lite"])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "at least 100 pairs" in out and "got 20 pairs" in out
    assert "excluded 2 records: captionless" in out


def test_hub_model_offline_and_unknown_collection_are_refused(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pairs = _jsonl(tmp_path / "p.jsonl", _shape_rows(tmp_path / "img"))
    result = cli.invoke(
        app, ["finetune", "--pairs", str(pairs), "--model", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"]
    )
    assert result.exit_code == 2 and "offline" in result.output
    result = cli.invoke(app, ["finetune", "nowhere", "--model", "iconosearch-lite"])
    assert result.exit_code == 2 and "unknown collection" in " ".join(result.output.split())
    result = cli.invoke(app, ["finetune", "--pairs", str(pairs), "--mode", "everything"])
    assert result.exit_code == 2 and "heads" in result.output


@pytest.mark.slow
def test_finetune_then_evaluate_through_the_cli(
    cli: CliRunner,
    tmp_path: Path,
    finetune_world: FinetuneWorld,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ICONOSEARCH_DATA_DIR", str(finetune_world.data_dir))  # shares the feature cache
    base = finetune_world.base_spec
    pairs = _jsonl(tmp_path / "shapes.jsonl", _shape_rows(tmp_path, finetune_world.pairs))
    out = tmp_path / "tuned"
    args = [
        "--json",
        "finetune",
        "--pairs",
        str(pairs),
        "--model",
        base,
        "--output",
        str(out),
        "--epochs",
        "6",
    ]
    args += ["--batch-size", "16", "--lr", "5e-3", "--val-fraction", "0.25", "--test-fraction", "0.25"]
    args += ["--min-eval-pairs", "6", "--resamples", "100"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["spec"] == f"local-dir:{out}"
    assert min(summary["val_loss"]) < summary["base_val_loss"]
    assert summary["counts"]["test"] == 20

    report = tmp_path / "report"
    evaluate_args = [
        "--json",
        "evaluate",
        base,
        summary["spec"],
        "--split",  # alone: the split names the pairs file it was made from
        str(out / "split.json"),
    ]
    result = cli.invoke(
        app, [*evaluate_args, "--output", str(report), "--resamples", "100", "--latency-queries", "2"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_images"] == 20  # the test split only
    tuned = payload["models"][1]
    assert tuned["spec"] == summary["spec"] and "t2i R@10" in tuned["vs_base"]
    assert tuned["speed"]["images_per_s"] > 0
    # the evaluate command reproduces finetune's own test comparison (same split, same vectors)
    assert tuned["metrics"]["t2i"]["R@5"] == pytest.approx(
        summary["test"]["models"][1]["metrics"]["t2i"]["R@5"]
    )
    assert {p.name for p in report.iterdir()} >= {"report.json", "REPORT.md", "recall.png", "difference.png"}


def test_a_harvested_collection_too_small_to_split_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    from tests.helpers.finetune_data import fake_harvest

    captioned = fake_harvest(tmp_path / "data" / "state.sqlite", tmp_path / "data" / "img", "maps", 4, 3)
    result = cli.invoke(app, ["finetune", "maps", "--model", "iconosearch-lite"])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, out
    assert f"got {captioned} pairs from 4 manifests" in out and "at least 100 pairs" in out
    assert "excluded 4 records: captionless" in out
