"""Fine-tuning benchmark and the offline demonstration; prints JSON.

1. **Demonstration** (``--demo --heritage FOLDER``): the embedded ``iconosearch-lite`` is fine-tuned (heads
   only) on a heritage collection it never trained on — the pomological watercolours its build held out
   (the demo collection's varieties: ``heldout`` in the shipped ``split.json``) — treated as an
   institution's collection: pairs go through the real CLI (``iconosearch finetune --pairs``), split by
   variety so near-duplicate watercolours never straddle train and test; then ``iconosearch evaluate``
   compares base and fine-tuned on the test split with paired bootstrap CIs. The report lands in
   ``docs/finetune-demo/``. Without ``--heritage``, the Tux Paint stamps of the clip-art corpus are used.
2. **Timing** (``--timing``): wall time and examples/s of each fine-tune mode on this machine for N pairs
   (default 5000: the whole corpus, repeated to N; frozen features cached on disk, as the modes allow).
   Tower-training modes are timed on a subset for a bounded number of steps and reported per example.

3. **open_clip bases** (``--openclip``): heads and LiT examples/s on a random-weight ViT-S-32 stand-in, with
   the frozen trunks cached and without (as before caching), next to lite's heads mode, in one run.
4. **Offline failure** (``--offline``): how long ``finetune`` with an uncached hub model takes to fail
   without ``HF_HUB_OFFLINE``, on this machine and with the hub at a closed local port.

Run: ``nice .venv/bin/python bench/finetune.py [--demo] [--timing] [--openclip] [--offline]`` (demo and
timing when none is given).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = ROOT / "build" / "finetune-bench"  # git-ignored
GPL2 = "https://www.gnu.org/licenses/old-licenses/gpl-2.0.html"
CC0 = "http://creativecommons.org/publicdomain/zero/1.0/"


def corpus_pairs_jsonl(part: str | None, path: Path) -> int:
    """Write corpus items (one split part, or all) as a pairs JSON-lines file; returns the count."""
    from iconosearch.lite.corpus import load_corpus, normalise_caption, read_split

    items = load_corpus()
    if part is not None:
        items = read_split().items(items, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for item in items:
            tux = item.source.startswith("tuxpaint")
            row = {
                "id": hashlib.sha256(item.key.encode()).hexdigest()[:16],
                "image": str(item.image),
                "caption": item.caption,
                "lang": "en",
                # identical captions (≤2 images each) form one group: they never straddle train and test
                "group": normalise_caption(item.caption),
                "collection": "institution" if tux else "openclipart",
                "rights": GPL2 if tux else CC0,
                "provider": "Tux Paint stamps (Debian)" if tux else "Open Clip Art Library (Debian)",
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(items)


def _short(path: Path) -> Path:
    """The path relative to the repository when inside it (shorter, machine-independent report labels)."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def _cli(args: list[str], data_dir: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "ICONOSEARCH_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    cmd = [str(Path(sys.executable).parent / "iconosearch"), "--json", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def heritage_pairs_jsonl(heritage: Path, path: Path) -> int:
    """The watercolours the shipped model's build held out, as a pairs JSON-lines file (group = variety)."""
    from iconosearch.evaluation.pairs import Split
    from iconosearch.lite.heritage import SETS, load_set
    from iconosearch.models.lite import BUILTIN_DIR

    split = Split.from_json(json.loads((BUILTIN_DIR / "split.json").read_text(encoding="utf-8"))["heritage"])
    items = [i for i in load_set(heritage, SETS["watercolours"]) if split.part_of(i.pair) == "heldout"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for item in items:
            p = item.pair
            row = {
                "id": p.item_id,
                "image": str(p.image_path),
                "caption": p.captions[0].text,
                "lang": "en",
                "group": p.group,
                "collection": "usda-pomological",
                "rights": p.rights,
                "provider": "USDA Pomological Watercolor Collection (National Agricultural Library)",
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(items)


def demo(
    work: Path, resamples: int, heritage: Path | None = None, *, quick: bool = False
) -> dict[str, object]:
    name = "watercolours" if heritage else "institution"
    pairs = work / f"{name}.jsonl"
    n = heritage_pairs_jsonl(heritage, pairs) if heritage else corpus_pairs_jsonl("institution", pairs)
    from iconosearch.models.embedder import load_embedder

    seeded = seed_feature_cache(
        pairs, work / "data" / "cache" / "features", load_embedder("iconosearch-lite")
    )
    model_dir = work / "models" / f"{name}-heads"
    shutil.rmtree(model_dir, ignore_errors=True)
    t0 = time.perf_counter()
    ft = _cli(
        [
            "finetune",
            "--pairs", str(pairs),
            "--model", "iconosearch-lite",
            "--mode", "heads",
            "--output", str(model_dir),
            "--val-fraction", "0.15",
            "--test-fraction", "0.25",
            "--epochs", "2" if quick else "40",
            "--batch-size", "128",
            "--patience", "8",
            "--seed", "0",
            "--resamples", str(resamples),
        ],
        work / "data",
    )  # fmt: skip
    finetune_s = time.perf_counter() - t0
    # A quick run is a smoke test: it must not replace the published demonstration.
    report_dir = work / "finetune-demo" if quick else ROOT / "docs" / "finetune-demo"
    shutil.rmtree(report_dir, ignore_errors=True)
    bench = _cli(
        [
            "evaluate",
            "iconosearch-lite",
            f"local-dir:{_short(model_dir)}",
            "--pairs", str(_short(pairs)),
            "--split", str(_short(model_dir / "split.json")),
            "--part", "test",
            "--output", str(report_dir),
            "--resamples", str(resamples),
            "--threads", "1",
        ],
        work / "data",
    )  # fmt: skip
    for doc in ("MODEL_CARD.md", "DATASHEET.md", "split.json"):
        shutil.copy(model_dir / doc, report_dir / doc)
    models = bench["models"]
    assert isinstance(models, list)
    return {
        "pairs": n,
        "collection": name,
        "seeded_from_lite_build": seeded,
        "finetune": {
            k: ft[k] for k in ("counts", "best_epoch", "epochs_run", "wall_s", "feature_s", "examples_per_s")
        },
        "finetune_cli_s": finetune_s,
        "report_dir": str(report_dir),
        "models": [
            {
                "spec": m["spec"],
                "metrics": m["metrics"],
                "speed": m["speed"],
                "verdict": m["verdict"],
                "vs_base": m["vs_base"],
            }
            for m in models
        ],
    }


def seed_feature_cache(jsonl: Path, cache_root: Path, base: object) -> dict[str, int]:
    """Copy the corpus features the lite build already computed into finetune's cache. Both use one cache
    layout and key scheme (``iconosearch.training.features``), so this is a plain copy; returns counts."""
    from iconosearch.evaluation.pairs import pairs_from_jsonl
    from iconosearch.lite.corpus import default_cache_dir
    from iconosearch.lite.features import feature_cache
    from iconosearch.training.features import FeatureCache, digest
    from iconosearch.training.finetune import FinetuneConfig
    from iconosearch.training.trainee import Trainee

    built = feature_cache(default_cache_dir())
    pairs = pairs_from_jsonl(jsonl).pairs
    trainee = Trainee(base, "cpu")  # type: ignore[arg-type]
    trainee.lock(FinetuneConfig(mode="heads"))
    img_key, txt_key = trainee.tower_keys(448)
    cache = FeatureCache(cache_root)
    n_i = n_t = 0
    for p in pairs:
        for key, item in ((img_key, p.content_hash), (txt_key, digest(p.captions[0].text))):
            value = built.get(key, item)
            if value is not None and cache.get(key, item) is None:
                cache.put(key, item, value)
                n_i, n_t = (n_i + 1, n_t) if key == img_key else (n_i, n_t + 1)
    return {"seeded_images": n_i, "seeded_texts": n_t}


def timing(
    work: Path, n_pairs: int, modes: list[str], tower_examples: int, threads: int | None
) -> dict[str, object]:
    import torch

    from iconosearch.evaluation.pairs import Pair, pairs_from_jsonl, split_by_group
    from iconosearch.models.embedder import load_embedder
    from iconosearch.training.finetune import FinetuneConfig, finetune

    all_pairs = work / "corpus.jsonl"
    corpus_pairs_jsonl(None, all_pairs)
    distinct = list(pairs_from_jsonl(all_pairs).pairs)
    repeated: list[Pair] = []
    k = 0
    while len(repeated) < n_pairs:
        p = distinct[k % len(distinct)]
        rep = k // len(distinct)
        repeated.append(
            Pair(
                f"{p.item_id}-{rep}",
                f"{p.group}#{rep}",
                p.collection,
                p.image_path,
                p.content_hash,
                p.captions,
            )
        )
        k += 1
    split = split_by_group(repeated, val_fraction=0.1, test_fraction=0.1, seed=0)
    train, val = split.select(repeated, "train"), split.select(repeated, "val")
    from iconosearch.models.specs import ModelUnavailableError

    try:
        base = load_embedder("iconosearch-lite", device="cpu")
    except ModelUnavailableError:
        # Timing does not depend on the heads' values: fresh heads on the same towers do as well.
        from iconosearch.lite.features import towers_embedder

        base = towers_embedder()
    cache = work / "features"
    seeded = seed_feature_cache(all_pairs, cache, base)
    out: dict[str, object] = {
        "seeded_from_lite_build": seeded,
        "torch_threads": torch.get_num_threads(),
        "tower_mode_threads": threads or torch.get_num_threads(),
        "heads_threads": 1,
        "pairs": len(repeated),
        "distinct_images": len(distinct),
        "train": len(train),
        "val": len(val),
    }
    t0 = time.perf_counter()
    # Fills the frozen-feature cache once (image + text towers); later runs read it from disk.
    finetune(
        base,
        train,
        val,
        (),
        split,
        work / "timing" / "warm",
        FinetuneConfig(mode="heads", epochs=1, max_pixels=400_000_000),
        device="cpu",
        feature_cache=cache,
        write_docs=False,
    )
    out["feature_cache_fill_s"] = time.perf_counter() - t0
    results = {}
    for mode in modes:
        if mode == "heads":
            cfg = FinetuneConfig(mode="heads", epochs=30, patience=6, max_pixels=400_000_000)
            sub_train, sub_val = train, val
        else:
            # Tower modes: one epoch over a bounded subset, extrapolated per example.
            cfg = FinetuneConfig(
                mode=mode,  # type: ignore[arg-type]
                epochs=1,
                batch_size=32,
                tower_lr=1e-5,
                max_pixels=400_000_000,
                threads=threads,
            )

            sub_train, sub_val = train[:tower_examples], val[:64]
        folder = work / "timing" / mode
        shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        r = finetune(
            base,
            sub_train,
            sub_val,
            (),
            split,
            folder,
            cfg,
            device="cpu",
            feature_cache=cache,
            write_docs=False,
        )
        wall = time.perf_counter() - t
        per_epoch = r.train_s / max(1, len(r.history))
        results[mode] = {
            "train_pairs": len(sub_train),
            "epochs_run": len(r.history),
            "best_epoch": r.best_epoch,
            "wall_s": round(wall, 2),
            "train_s": round(r.train_s, 2),
            "feature_s": round(r.feature_s, 2),
            "examples_per_s": round(r.examples_per_s, 1),
            "epoch_s": round(per_epoch, 2),
            f"epoch_s_at_{len(train)}_pairs": round(len(train) / r.examples_per_s, 1),
        }
    out["modes"] = results
    return out


def openclip_timing(work: Path, n_train: int, epochs: int) -> dict[str, object]:
    """Heads and LiT examples/s on a random-weight ViT-S-32 stand-in, with the frozen trunks cached (as
    fine-tuning runs now) and without (the trunk/head split switched off: every epoch runs the frozen
    towers, as before), next to lite's heads mode on the same pairs. Same run, so the ratios hold."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from iconosearch.evaluation.pairs import pairs_from_jsonl, split_by_group
    from iconosearch.models.embedder import load_embedder
    from iconosearch.training import trainee as trainee_module
    from iconosearch.training.finetune import FinetuneConfig, finetune

    standin = work / "vit-s-32.safetensors"
    if not standin.is_file():
        torch.manual_seed(0)
        state = open_clip.create_model("ViT-S-32").state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(standin))
    all_pairs = work / "corpus.jsonl"
    corpus_pairs_jsonl(None, all_pairs)
    pairs = list(pairs_from_jsonl(all_pairs).pairs)[: n_train + 64]
    split = split_by_group(pairs, val_fraction=0.1, test_fraction=0.1, seed=0)
    train, val = split.select(pairs, "train")[:n_train], split.select(pairs, "val")
    bases = {"vit-s-32": f"ViT-S-32/{standin}", "lite": "iconosearch-lite"}
    out: dict[str, object] = {"train_pairs": len(train), "val_pairs": len(val), "epochs": epochs}
    separable = trainee_module.Trainee.separable
    for label, cached in (("cached", True), ("uncached", False)):
        if not cached:
            trainee_module.Trainee.separable = property(lambda self: self.is_lite)  # type: ignore[method-assign,assignment]
        for base_name, spec in bases.items():
            for mode in ("heads", "lit"):
                if base_name == "lite" and (mode == "lit" or not cached):
                    continue
                folder = work / "openclip-timing" / f"{base_name}-{mode}-{label}"
                shutil.rmtree(folder, ignore_errors=True)
                cfg = FinetuneConfig(mode=mode, epochs=epochs, batch_size=32, patience=epochs, tower_lr=1e-5)  # type: ignore[arg-type]
                r = finetune(
                    load_embedder(spec, device="cpu"), train, val, (), split, folder, cfg, device="cpu",
                    feature_cache=work / "openclip-features", write_docs=False,
                )  # fmt: skip
                out[f"{base_name} {mode} {label}"] = {
                    "examples_per_s": round(r.examples_per_s, 1),
                    "feature_s": round(r.feature_s, 1),
                    "train_s": round(r.train_s, 1),
                }
        trainee_module.Trainee.separable = separable  # type: ignore[method-assign]
    return out


def offline_failure(work: Path) -> dict[str, object]:
    """Seconds until `finetune` with a hub model that is not cached fails, without HF_HUB_OFFLINE: on this
    machine as it is (air-gapped), and with the hub pointed at a closed local port."""
    import socket

    pairs = work / "offline.jsonl"
    corpus_pairs_jsonl("institution", pairs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    out: dict[str, object] = {}
    for label, endpoint in (("this machine", None), ("closed local port", f"http://127.0.0.1:{closed}")):
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env["HF_HOME"] = str(work / "empty-hf-home")
        if endpoint:
            env["HF_ENDPOINT"] = endpoint
        cmd = [str(Path(sys.executable).parent / "iconosearch"), "finetune", "--pairs", str(pairs)]
        cmd += ["--model", "ViT-B-32/laion2b_s34b_b79k", "--output", str(work / "offline-out")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
        command_s = time.perf_counter() - t0
        # The failure itself, without the command's imports (torch, open_clip: most of the wall time).
        probe = subprocess.run(
            [sys.executable, "-c", RESOLVE_TIMER], env=env, capture_output=True, text=True, check=False
        )
        out[label] = {
            "command_seconds": round(command_s, 2),
            "exit_code": proc.returncode,
            **json.loads(probe.stdout or "{}"),
            "message": " ".join(proc.stderr.split())[:200],
        }
    return out


RESOLVE_TIMER = """
import json, time
import open_clip
from iconosearch.models import hub
t0 = time.perf_counter()
try:
    hub.check_available("ViT-B-32/laion2b_s34b_b79k")
    failed = False
except Exception:
    failed = True
print(json.dumps({"failed": failed, "failure_seconds": round(time.perf_counter() - t0, 3),
                  "probe_seconds": hub.probe_seconds()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--modes", default="heads,lit,text-locked,full")
    parser.add_argument("--tower-examples", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the tower modes")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--heritage", type=Path, default=None, help="heritage sets folder (demo collection)")
    parser.add_argument("--openclip", action="store_true", help="heads/LiT examples/s on a ViT-S-32 stand-in")
    parser.add_argument("--openclip-pairs", type=int, default=256)
    parser.add_argument("--openclip-epochs", type=int, default=2)
    parser.add_argument("--offline", action="store_true", help="time the offline failure of a hub model")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.modes, args.tower_examples, args.resamples = 200, "heads", 16, 50
        args.openclip_pairs, args.openclip_epochs = 32, 1
    result: dict[str, object] = {"benchmark": "finetune", "load_average": os.getloadavg()}
    if args.offline:
        result["offline_failure"] = offline_failure(args.work)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.openclip:
        result["openclip"] = openclip_timing(args.work, args.openclip_pairs, args.openclip_epochs)
    both = not args.demo and not args.timing and not args.openclip and not args.offline
    if args.demo or both:
        result["demo"] = demo(args.work, args.resamples, args.heritage, quick=args.quick)
    if args.timing or both:
        result["timing"] = timing(
            args.work, args.pairs, args.modes.split(","), args.tower_examples, args.threads
        )
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
