"""The CLI surface and configuration loading (issue 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iconosearch.cli import app
from iconosearch.config import ConfigError, load_settings

JOBS = ["harvest", "index", "serve", "search", "demo", "finetune", "evaluate", "models", "config"]

runner = CliRunner()


def test_help_lists_every_job() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for job in JOBS:
        assert job in result.output


def test_console_script_runs_without_heavy_imports() -> None:
    # `--help` must stay fast: torch/faiss are imported inside commands, not at start-up.
    code = (
        "import sys; from iconosearch import cli; "
        "print(sorted(m for m in ('torch', 'faiss', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_show_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ICONOSEARCH_CONFIG", raising=False)
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    body = result.output.split("\n", 1)[1]
    data = tomllib.loads(body)
    assert data["model"] == "iconosearch-lite"
    assert data["server"]["host"] == "127.0.0.1"
    assert data["limits"]["upload_max_bytes"] == 20 * 1024 * 1024


def test_config_show_json_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "conf.toml"
    cfg.write_text('[server]\napi_keys = ["s3cret-key"]\nport = 9001\n')
    result = runner.invoke(app, ["--config", str(cfg), "--json", "config", "show"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["server"]["port"] == 9001
    assert "s3cret-key" not in result.output
    assert data["server"]["api_keys"] == ["**********"]


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "iconosearch.toml"
    cfg.write_text('model = "ViT-B-32/laion2b_s34b_b79k"\n[server]\nport = 9001\n')
    monkeypatch.setenv("ICONOSEARCH_SERVER__PORT", "9100")
    settings = load_settings(cfg)
    assert settings.server.port == 9100
    assert settings.model == "ViT-B-32/laion2b_s34b_b79k"
    # Relative paths in a config file are anchored at the file.
    assert settings.data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nport = 99999\n", "server.port"),
        ("[limits]\nk_max = 0\n", "limits.k_max"),
        ("colour = 'blue'\n", "colour: unknown key"),
        ("[collections.maps]\nkind = 'collection'\n", "collections.maps"),
        ("[collections.maps]\nkind = 'ftp'\nurl = 'x'\n", "collections.maps.kind"),
        ("[server\nport = 1\n", "not valid TOML"),
    ],
)
def test_bad_config_is_rejected_with_the_key(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert expected in str(info.value)
    result = runner.invoke(app, ["--config", str(cfg), "config", "show"])
    assert result.exit_code == 2
    assert expected in result.output


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(tmp_path / "nope.toml"), "config", "show"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_collections_parse(tmp_path: Path) -> None:
    cfg = tmp_path / "iconosearch.toml"
    cfg.write_text(
        "[collections.nls]\nkind = 'collection'\nurl = 'https://example.org/collection.json'\nmax_depth = 2\n"
        "[collections.mine]\nkind = 'local'\npath = 'images'\n"
    )
    settings = load_settings(cfg)
    assert settings.collections["nls"].max_depth == 2
    assert settings.collections["mine"].path == tmp_path / "images"


def test_collection_kinds_come_from_the_source_registry() -> None:
    from pydantic import ValidationError

    from iconosearch.config import CollectionConfig
    from iconosearch.source_kinds import source_kinds

    assert source_kinds() == ["changes", "collection", "local", "manifest", "manifest-list"]
    with pytest.raises(ValidationError, match="unknown collection kind 'oai-pmh'; known: changes"):
        CollectionConfig(kind="oai-pmh", url="https://example.org/oai")
    with pytest.raises(ValidationError, match=r"a 'local' collection needs 'path' \(a folder of images\)"):
        CollectionConfig(kind="local")
    with pytest.raises(ValidationError, match="a 'manifest-list' collection needs 'path' or 'url'"):
        CollectionConfig(kind="manifest-list")
