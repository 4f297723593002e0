"""Benchmark reports: ``report.json``, ``REPORT.md`` and PNG charts in one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iconosearch.evaluation.benchmark import BenchResult, ModelResult
from iconosearch.evaluation.metrics import DirectionMetrics, direction_as_dict

DIRECTIONS = {"t2i": "text→image", "i2t": "image→text"}


def result_as_dict(result: BenchResult) -> dict[str, Any]:
    def breakdown(m: ModelResult) -> dict[str, Any]:
        return {
            kind: {
                name: {d: direction_as_dict(v) for d, v in dirs.items() if isinstance(v, DirectionMetrics)}
                for name, dirs in groups.items()
            }
            for kind, groups in m.breakdown.items()
        }

    return {
        "base": result.base,
        "split": result.split_name,
        "n_images": result.n_images,
        "n_texts": result.n_texts,
        "n_groups": result.n_groups,
        "seed": result.seed,
        "confidence": result.confidence,
        "n_resamples": result.n_resamples,
        "created": result.created,
        "notes": list(result.notes),
        "chance": result.chance,
        "warnings": list(result.warnings),
        "models": [
            {
                "spec": m.spec,
                "fingerprint": m.fingerprint,
                "metrics": m.metrics.as_dict(),
                "breakdown": breakdown(m),
                "speed": m.speed.as_dict() if m.speed else None,
                "vs_base": {k: iv.as_dict() for k, iv in m.vs_base.items()},
                "verdict": m.verdict,
            }
            for m in result.models
        ],
    }


def _pct(x: float) -> str:
    return f"{x * 100:.1f}"


def markdown(result: BenchResult) -> str:
    lines = [
        "# Retrieval benchmark",
        "",
        f"Held-out split **{result.split_name}**: {result.n_images} images, {result.n_texts} captions from "
        f"{result.n_groups} manifests. Base model: `{result.base}`. Created {result.created}.",
        "",
        "## Verdicts",
        "",
        *[f"- {m.verdict}" for m in result.models],
        "",
    ]
    if result.warnings:
        lines += ["## Warnings: too small to measure", "", *[f"- {w}" for w in result.warnings], ""]
    lines += _direction_tables(result)
    lines += _difference_table(result)
    lines += _breakdown_tables(result)
    lines += _speed_table(result)
    if result.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in result.notes], ""]
    lines += [
        "Charts: `recall.png` (recall per model), `difference.png` (differences from the base with CIs).",
        "",
    ]
    return "\n".join(lines)


def _direction_tables(result: BenchResult) -> list[str]:
    """One table per direction: each model's recall, median rank and MRR, then the chance row."""
    ks = sorted(result.models[0].metrics.t2i.recall)
    lines: list[str] = []
    for d, title in DIRECTIONS.items():
        dm0: DirectionMetrics = getattr(result.models[0].metrics, d)
        lines += [
            f"## {title}",
            "",
            f"n = {dm0.n_queries} queries, each ranked against {dm0.gallery_size} candidates.",
            "",
            "| model | " + " | ".join(f"R@{k}" for k in ks) + " | median rank | MRR |",
            "|---|" + "---:|" * (len(ks) + 2),
        ]
        for m in result.models:
            dm: DirectionMetrics = getattr(m.metrics, d)
            lines.append(
                f"| `{m.spec}` | "
                + " | ".join(_pct(dm.recall[k]) for k in ks)
                + f" | {dm.median_rank:g} | {dm.mrr:.3f} |"
            )
        chance = result.chance.get(d)
        if chance:
            lines.append(
                "| chance (random ranking) | "
                + " | ".join(_pct(chance[f"R@{k}"]) for k in ks)
                + f" | {chance['median_rank']:.1f} | {chance['mrr']:.3f} |"
            )
        lines.append("")
    return lines


def _difference_table(result: BenchResult) -> list[str]:
    others = [m for m in result.models if m.vs_base]
    if not others:
        return []
    conf = f"{result.confidence:.0%}"
    lines = [
        f"## Difference from the base ({conf} paired bootstrap CI)",
        "",
        f"{result.n_resamples} resamples of whole manifests (seed {result.seed}); recall in percentage "
        "points, MRR in units, median rank in ranks (negative is better). * = CI excludes 0.",
        "",
        "| model | statistic | difference | CI low | CI high |",
        "|---|---|---:|---:|---:|",
    ]
    for m in others:
        for name, iv in m.vs_base.items():
            scale, fmt = (100, "+.1f") if "R@" in name else (1, "+.3f") if "MRR" in name else (1, "+.1f")
            star = " *" if iv.significant else ""
            lines.append(
                f"| `{m.spec}` | {name} | {iv.estimate * scale:{fmt}}{star} | {iv.low * scale:{fmt}} | "
                f"{iv.high * scale:{fmt}} |"
            )
    lines.append("")
    return lines


def _breakdown_tables(result: BenchResult) -> list[str]:
    lines: list[str] = []
    for m in result.models:
        for kind, groups in m.breakdown.items():
            lines += [
                f"## `{m.spec}` by {kind}",
                "",
                "| " + kind + " | direction | queries | R@1 | R@10 | MRR |",
                "|---|---|---:|---:|---:|---:|",
            ]
            for name, dirs in groups.items():
                for d, dm in dirs.items():
                    r1, r10 = dm.recall.get(1, float("nan")), dm.recall.get(10, float("nan"))
                    row = [name, DIRECTIONS[d], str(dm.n_queries), _pct(r1), _pct(r10), f"{dm.mrr:.3f}"]
                    lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return lines


def _speed_table(result: BenchResult) -> list[str]:
    timed = [m for m in result.models if m.speed]
    if not timed:
        return []
    lines = [
        "## Speed on this machine",
        "",
        "| model | images/s | text query (ms, median) |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| `{m.spec}` | {m.speed.images_per_s:.1f} | {m.speed.text_query_ms:.1f} |" for m in timed if m.speed
    ]
    return [*lines, ""]


def charts(result: BenchResult, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written: list[Path] = []
    ks = sorted(result.models[0].metrics.t2i.recall)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    width = 0.8 / max(1, len(result.models))
    x = np.arange(len(ks))
    for ax, (d, title) in zip(axes, DIRECTIONS.items(), strict=True):
        for i, m in enumerate(result.models):
            dm: DirectionMetrics = getattr(m.metrics, d)
            ax.bar(x + i * width, [dm.recall[k] * 100 for k in ks], width, label=m.spec)
        ax.set_xticks(x + width * (len(result.models) - 1) / 2, [f"R@{k}" for k in ks])
        ax.set_title(title)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("recall (%)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = folder / "recall.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    others = [m for m in result.models if m.vs_base]
    if others:
        names = [n for n in others[0].vs_base if "R@" in n or "MRR" in n]
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) * len(others) + 1.5))
        y = 0
        labels: list[str] = []
        for m in others:
            for n in names:
                iv = m.vs_base[n]
                scale = 100  # recall in points; MRR ×100 shares the axis
                ax.errorbar(
                    iv.estimate * scale,
                    y,
                    xerr=[[(iv.estimate - iv.low) * scale], [(iv.high - iv.estimate) * scale]],
                    fmt="o",
                    color="tab:green" if iv.low > 0 else "tab:red" if iv.high < 0 else "tab:gray",
                )
                labels.append(f"{n} · {m.spec}" if len(others) > 1 else n)
                y += 1
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"model − base (points, MRR ×100), {result.confidence:.0%} CI")
        ax.set_title(f"Difference from {result.base}")
        fig.tight_layout()
        path = folder / "difference.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(result: BenchResult, folder: Path) -> list[Path]:
    """Write report.json, REPORT.md and the charts; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    json_path.write_text(
        json.dumps(result_as_dict(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    md_path = folder / "REPORT.md"
    md_path.write_text(markdown(result), encoding="utf-8")
    return [json_path, md_path, *charts(result, folder)]
