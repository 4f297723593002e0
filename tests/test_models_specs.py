"""Model spec parsing and the offline behaviour of hub specs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from iconosearch.models.embedder import load_embedder
from iconosearch.models.specs import (
    LITE_NAME,
    ModelSpecError,
    ModelUnavailableError,
    hub_offline,
    parse_spec,
)


def test_lite_spec() -> None:
    spec = parse_spec("iconosearch-lite")
    assert spec.kind == "lite"
    assert spec.name == LITE_NAME
    assert not spec.needs_hub


def test_open_clip_pair() -> None:
    spec = parse_spec("ViT-B-32/laion2b_s34b_b79k")
    assert (spec.kind, spec.name, spec.pretrained) == ("open_clip", "ViT-B-32", "laion2b_s34b_b79k")
    assert spec.needs_hub
    assert spec.raw == "ViT-B-32/laion2b_s34b_b79k"


def test_open_clip_with_checkpoint_file() -> None:
    spec = parse_spec("ViT-B-32//srv/models/ft.pt")
    assert spec.kind == "open_clip"
    assert spec.pretrained == "/srv/models/ft.pt"
    assert not spec.needs_hub
    assert spec.path == Path("/srv/models/ft.pt")


def test_hub_and_local_dir() -> None:
    hub = parse_spec("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert (hub.kind, hub.name) == ("hf-hub", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert hub.needs_hub
    local = parse_spec("local-dir:/models/clip")
    assert local.kind == "local-dir"
    assert local.path == Path("/models/clip")


@pytest.mark.parametrize("text", ["./ft/heads", "/abs/model.safetensors", "../x/y.pt", "weights.bin"])
def test_checkpoint_paths(text: str) -> None:
    spec = parse_spec(text)
    assert spec.kind == "checkpoint"
    assert spec.path == Path(text)


def test_existing_relative_folder_is_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ft" / "heads").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_spec("ft/heads").kind == "checkpoint"
    assert parse_spec("ft/missing").kind == "open_clip"


@pytest.mark.parametrize("text", ["", "   ", "ViT-B-32", "hf-hub:", "hf-hub:onlyorg", "local-dir:", "ARCH/"])
def test_bad_specs(text: str) -> None:
    with pytest.raises(ModelSpecError):
        parse_spec(text)


def test_hub_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not hub_offline()


@pytest.mark.parametrize(
    "spec",
    ["ViT-B-32/laion2b_s34b_b79k", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "ViT-B-16/openai"],
)
def test_hub_model_offline_fails_fast(spec: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing was ever downloaded
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    import open_clip  # noqa: F401 - import cost is not what "fast" is about

    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        load_embedder(spec, device="cpu")
    assert time.perf_counter() - started < 10
    message = str(info.value)
    assert "offline" in message
    assert "iconosearch-lite" in message


def test_unknown_pretrained_tag_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="no pretrained tag"):
        load_embedder("ViT-B-32/no-such-tag", device="cpu")


def test_missing_checkpoint_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_embedder(str(tmp_path / "nothing-here"), device="cpu")


def test_checkpoint_folder_without_heads_is_clear(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match="not an iconosearch-lite checkpoint"):
        load_embedder(str(tmp_path), device="cpu")


def test_cli_lists_models_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from iconosearch.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["--json", "models"])
    assert result.exit_code == 0, result.output
    rows = {row["spec"]: row for row in json.loads(result.stdout)}
    lite = rows["iconosearch-lite"]
    assert lite["offline"] is True
    assert lite["dim"] in (256, 640, 768)  # heads only, + a MiniLM bridge (384), + a USE-m3 bridge (512)
    assert "mean/std 0.5" in lite["preprocessing"]
    hub = rows["ViT-B-32/laion2b_s34b_b79k"]
    assert hub["dim"] == 512
    assert "license" in hub and hub["description"]


def test_cli_table_mentions_spec_forms() -> None:
    from typer.testing import CliRunner

    from iconosearch.cli import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    flat = "".join(result.stdout.split())  # rich wraps cells to the terminal width
    assert "iconosearch-lite" in flat
    assert "hf-hub:ORG/REPO" in flat


def test_spec_kinds_are_registered_with_catch_alls_last() -> None:
    from iconosearch.models.embedder import _LOADERS
    from iconosearch.models.specs import spec_kinds

    kinds = [k.kind for k in spec_kinds()]
    assert kinds == ["lite", "hf-hub", "local-dir", "checkpoint", "open_clip"]
    # Every parseable kind can also be loaded: a form without a loader would fail only at load time.
    assert set(kinds) == set(_LOADERS)


def test_registering_a_kind_twice_is_refused() -> None:
    from iconosearch.models.specs import SpecKind, register_spec_kind

    with pytest.raises(ValueError, match="already registered"):
        register_spec_kind(SpecKind("lite", lambda raw, text: None, "'x'"))


def test_available_models_lists_the_default_first_and_says_what_works_offline() -> None:
    from iconosearch.models.available import available_models

    rows = available_models()
    assert rows[0]["spec"] == LITE_NAME and rows[0]["offline"] is True
    assert all(set(r) == {"spec", "dim", "preprocessing", "license", "offline", "description"} for r in rows)
    assert all(parse_spec(r["spec"]) for r in rows)
