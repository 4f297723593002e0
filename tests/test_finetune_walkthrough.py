"""The golden walkthrough: docs/finetune-walkthrough.md's commands, run as written, end to end.

The page's configuration blocks become the config file and its ``iconosearch`` commands run in order through
the real CLI, on a random-weight ``ViT-S-32`` checkpoint standing in for ``$BASE`` (the hub is not reachable
from tests) and a 64-image local collection. Only options that keep the run small are added (``SMALL``).
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iconosearch.cli import app
from tests.helpers.finetune_data import shape_pairs

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[1] / "docs" / "finetune-walkthrough.md"
SMALL = {
    "finetune": [
        *("--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2", "--test-fraction", "0.2"),
        *("--min-eval-pairs", "8", "--resamples", "200"),
    ],
    "evaluate": ["--resamples", "200", "--latency-queries", "2"],
}
MODES = ("heads", "lit", "text-locked", "full")


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def _commands() -> list[list[str]]:
    """Every ``iconosearch`` command of the page's shell blocks, continuation lines joined, in order."""
    out = []
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if words and words[0] == "iconosearch":
                out.append(words[1:])
    return out


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight ViT-S-32 saved as open_clip saves a state dict, and the same weights as a folder."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("standin")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "vit-s-32.safetensors"))
    (folder / "dir").mkdir()
    save_file(state, str(folder / "dir" / "open_clip_model.safetensors"))
    config = {
        "model_cfg": open_clip.get_model_config("ViT-S-32"),
        "preprocess_cfg": {"mean": list(model.visual.image_mean), "std": list(model.visual.image_std)},
    }
    (folder / "dir" / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _collection(folder: Path) -> None:
    """64 captioned images with a metadata.csv, as a collection management system would export them."""
    pairs = shape_pairs(folder, variants=4)
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "title", "description", "rights", "attribution"])
        for p in pairs:
            writer.writerow([p.image_path.name, p.captions[0].text, "", p.rights, "Test Museum"])


def test_the_walkthrough_runs_as_written(
    standin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ICONOSEARCH_DATA_DIR", raising=False)
    monkeypatch.delenv("ICONOSEARCH_CONFIG", raising=False)
    _collection(tmp_path / "exports" / "maps")
    collection_toml, model_toml = _blocks("toml")
    Path("iconosearch.toml").write_text(collection_toml, encoding="utf-8")
    base = f"ViT-S-32/{standin / 'vit-s-32.safetensors'}"
    commands = _commands()
    assert [c[0] for c in commands] == ["harvest", *["finetune"] * 4, "evaluate", "index"]
    assert {c[c.index("--mode") + 1] for c in commands if c[0] == "finetune"} == set(MODES)
    cli = CliRunner()
    for words in commands:
        if words[0] == "index":  # step 5: the fine-tuned model becomes the configured one
            Path("iconosearch.toml").write_text(model_toml + collection_toml, encoding="utf-8")
        args = [base if w == "$BASE" else w for w in words] + SMALL.get(words[0], [])
        result = cli.invoke(app, args)
        assert result.exit_code == 0, f"{shlex.join(words)}\n{result.output}"
        if words[0] == "finetune":
            out = " ".join(result.output.split())
            assert "the base stayed best" in out or "best epoch 1 of 1" in out, out
    for mode in MODES:
        folder = tmp_path / "data" / "models" / f"maps-{mode}"
        assert (folder / "open_clip_config.json").is_file() and (folder / "MODEL_CARD.md").is_file()
        assert "| Test Museum |" in (folder / "DATASHEET.md").read_text(encoding="utf-8")
        assert "chance (random ranking)" in (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    # the frozen trunks of heads and lit were cached: image and text features of the open_clip base
    assert len(list((tmp_path / "data" / "cache" / "features").iterdir())) >= 2
    (report,) = (tmp_path / "data" / "reports").iterdir()
    payload = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert payload["models"][0]["spec"] == base and len(payload["models"]) == 5
    assert payload["chance"]["t2i"]["R@1"] > 0 and payload["warnings"]  # a dozen test pairs: said plainly
    manifest = next((tmp_path / "data" / "indexes").rglob("manifest.json"))
    assert "maps-lit" in manifest.read_text(encoding="utf-8")


def test_the_same_weights_have_one_fingerprint_however_they_are_named(standin: Path) -> None:
    from iconosearch.models.embedder import load_embedder

    file = standin / "vit-s-32.safetensors"
    by_arch = load_embedder(f"ViT-S-32/{file}", device="cpu")
    bare = load_embedder(str(file), device="cpu")  # the architecture is read from the tensor shapes
    folder = load_embedder(f"local-dir:{standin / 'dir'}", device="cpu")
    assert by_arch.fingerprint == bare.fingerprint == folder.fingerprint
