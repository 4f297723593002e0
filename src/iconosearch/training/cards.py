"""Model cards and datasheets: one writer (:func:`write_card`), with sections per use.

A fine-tuned model's card is built here from its run (:func:`finetune_card`); the default model's build
(:mod:`iconosearch.lite.card`) assembles its own sections and writes them with the same writer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from iconosearch.evaluation.pairs import Pair, Split
from iconosearch.training.finetune_config import FinetuneConfig, FinetuneResult


@dataclass(frozen=True, slots=True)
class Section:
    """One ``##`` section of a card: its heading and its markdown lines."""

    heading: str
    lines: Sequence[str]


def write_card(path: Path, title: str, intro: Sequence[str], sections: Sequence[Section]) -> None:
    """Write a markdown card: ``# title``, the intro paragraph(s), then each section in order."""
    lines = [f"# {title}", "", *intro]
    for section in sections:
        lines += ["", f"## {section.heading}", "", *section.lines]
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


def _table(counter: Counter[str], total: int, limit: int = 15, head: str = "value") -> list[str]:
    lines = [f"| {head} | pairs | share |", "|---|---:|---:|"]
    for name, n in counter.most_common(limit):
        lines.append(f"| {name} | {n} | {n / max(total, 1):.0%} |")
    if len(counter) > limit:
        rest = sum(n for _, n in counter.most_common()[limit:])
        lines.append(f"| ({len(counter) - limit} more) | {rest} | {rest / max(total, 1):.0%} |")
    return lines


def _century(c: int | None) -> str:
    if c is None:
        return "undated"
    n = abs(c)
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix} c." + (" BCE" if c < 0 else "")


def _rights(pairs: Iterable[Pair]) -> Counter[str]:
    from iconosearch.rights import rights_class

    return Counter(f"{rights_class(p.rights)}: {p.rights or 'no statement'}" for p in pairs)


def write_finetune_card(
    path: Path,
    result: FinetuneResult,
    config: FinetuneConfig,
    *,
    base_spec: str,
    pairs_train: Sequence[Pair],
) -> None:
    """The card of a fine-tuned model."""
    intro = [
        f"Use it as the model spec `{result.spec}`: set `model` to it in the config, then run "
        "`iconosearch index`."
    ]
    sections = [
        Section("Model", _finetune_model(result, config, base_spec)),
        Section("Training data", _finetune_data(result, pairs_train)),
        Section(
            "Hyperparameters",
            ["| name | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in asdict(config).items()]],
        ),
        Section("Evaluation on the held-out test split", _finetune_test(result)),
        Section("Intended use", INTENDED_USE),
        Section("Limitations", FINETUNE_LIMITATIONS),
    ]
    write_card(path, f"Model card: {path.parent.name}", intro, sections)


INTENDED_USE = (
    "Text-to-image and image-to-image search over the collections above and similar material, as a "
    "finding aid that staff and the public check against the catalogue record. Not for identifying "
    "people, dating or attributing objects, or any decision about individuals.",
)
FINETUNE_LIMITATIONS = (
    "- It only knows what its training captions say: concepts, languages and periods absent from them "
    "are retrieved no better (possibly worse) than by the base model. See the datasheet's gaps.",
    "- Captions are catalogue metadata, not descriptions of the picture: titles, shelfmarks and dates "
    "teach little, and historic catalogue language carries its period's biases.",
    "- Test scores come from the same institution's material; they say little about other collections.",
    "- Small test sets give wide intervals: read the CI, not the point estimate.",
)


def _finetune_model(result: FinetuneResult, config: FinetuneConfig, base_spec: str) -> list[str]:
    return [
        f"- **Base model:** `{base_spec}`",
        f"- **Fine-tuning mode:** `{config.mode}`"
        + (
            f" (last {config.unlocked_text_layers} text layers unlocked)"
            if config.mode == "text-locked"
            else ""
        ),
        "- **Objective:** symmetric InfoNCE (open_clip `ClipLoss`), learnable temperature",
        f"- **Best epoch:** {result.best_epoch} of {len(result.history)} run"
        + (" (stopped early)" if result.stopped_early else "")
        + (f"; resumed after epoch {result.resumed_from_epoch}" if result.resumed_from_epoch else ""),
        f"- **Training time:** {result.wall_s:.0f} s wall, {result.examples_per_s:.0f} examples/s",
        *(
            [
                "- **The base stayed best:** no epoch beat its validation mean recall "
                f"({result.base_val_mean_recall:.1%}), so this model *is* the base, unchanged (best epoch 0)."
            ]
            if result.best_epoch == 0
            else []
        ),
    ]


def _finetune_data(result: FinetuneResult, pairs_train: Sequence[Pair]) -> list[str]:
    collections = sorted({p.collection for p in pairs_train})
    return [
        f"Collections: {', '.join(collections)}. Pairs: {result.counts.get('train', 0)} train, "
        f"{result.counts.get('val', 0)} validation, {result.counts.get('test', 0)} test, split by manifest "
        "(`split.json`; no manifest is in two parts). See `DATASHEET.md` for provenance, rights and gaps."
    ]


def _finetune_test(result: FinetuneResult) -> list[str]:
    if result.test is None:
        return ["No test pairs: not evaluated."]
    t = result.test
    lines = [
        f"{t.n_images} images, {t.n_texts} captions from {t.n_groups} manifests never seen in training. "
        f"Differences are fine-tuned − base with {t.confidence:.0%} paired bootstrap intervals "
        f"({t.n_resamples} resamples of whole manifests).",
        "",
        "| model | t→i R@1 | t→i R@5 | t→i R@10 | i→t R@1 | i→t R@5 | i→t R@10 | t→i MRR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in t.models:
        r, s = m.metrics.t2i.recall, m.metrics.i2t.recall
        name = "fine-tuned" if m.spec == result.spec else f"base `{m.spec}`"
        lines.append(
            f"| {name} | {r[1]:.1%} | {r[5]:.1%} | {r[10]:.1%} | {s[1]:.1%} | {s[5]:.1%} | {s[10]:.1%} | "
            f"{m.metrics.t2i.mrr:.3f} |"
        )
    if t.chance:
        c, d = t.chance["t2i"], t.chance["i2t"]
        lines.append(
            f"| chance (random ranking) | {c['R@1']:.1%} | {c['R@5']:.1%} | {c['R@10']:.1%} | "
            f"{d['R@1']:.1%} | {d['R@5']:.1%} | {d['R@10']:.1%} | {c['mrr']:.3f} |"
        )
    tuned = next(m for m in t.models if m.vs_base)
    lines += ["", "| statistic | difference | CI |", "|---|---:|---|"]
    for name, iv in tuned.vs_base.items():
        if "R@" in name:
            lines.append(
                f"| {name} | {iv.estimate * 100:+.1f} pts | [{iv.low * 100:+.1f}, {iv.high * 100:+.1f}] |"
            )
        elif "MRR" in name:
            lines.append(f"| {name} | {iv.estimate:+.3f} | [{iv.low:+.3f}, {iv.high:+.3f}] |")
    lines += ["", f"**Verdict:** {tuned.verdict}"]
    if t.warnings:
        lines += ["", "**Too small to measure:**", "", *[f"- {w}" for w in t.warnings]]
    return lines


def write_datasheet(
    path: Path,
    train: Sequence[Pair],
    val: Sequence[Pair],
    test: Sequence[Pair],
    split: Split,
    excluded: dict[str, int],
) -> None:
    everything = [*train, *val, *test]
    total = len(everything)
    langs: Counter[str] = Counter(c.lang for p in everything for c in p.captions)
    lengths = sorted(len(c.text.split()) for p in everything for c in p.captions)
    providers = Counter(p.provider or "(not stated)" for p in everything)
    centuries = Counter(_century(p.century) for p in everything)
    per_manifest = Counter(p.group for p in everything)
    lines = [
        "# Datasheet: training data",
        "",
        "## Composition",
        "",
        f"{total} image–caption pairs from {len(per_manifest)} manifests; train {len(train)}, validation "
        f"{len(val)}, test {len(test)} (split by manifest, seed {split.seed}; file `split.json`).",
        "",
        *_table(Counter(p.collection for p in everything), total, head="collection"),
        "",
        "Excluded before training: "
        + (", ".join(f"{n} {why}" for why, n in sorted(excluded.items())) if excluded else "nothing")
        + ".",
        "",
        "## Captions",
        "",
        "Built by the harvest's caption rule from each record's label, summary and configured metadata "
        "fields "
        "(title, description, subject by default); one caption per language.",
        "",
        *_table(langs, sum(langs.values()), head="language"),
        "",
        f"Caption length: median {lengths[len(lengths) // 2] if lengths else 0} words, "
        f"max {lengths[-1] if lengths else 0}.",
        "",
        "## Provenance and rights",
        "",
        "Provider: the record's IIIF provider, else its attribution (requiredStatement; the `attribution` "
        "column of a local folder's metadata.csv).",
        "",
        *_table(providers, total, head="provider"),
        "",
        *_table(_rights(everything), total, head="rights"),
        "",
        "## Time",
        "",
        *_table(centuries, total, head="century"),
        "",
        "## Known gaps and biases",
        "",
    ]
    gaps = _gaps(providers, centuries, per_manifest, langs, excluded, total)
    lines += [f"- {g}" for g in gaps]
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def _gaps(
    providers: Counter[str],
    centuries: Counter[str],
    per_manifest: Counter[str],
    langs: Counter[str],
    excluded: dict[str, int],
    total: int,
) -> list[str]:
    """The gaps and biases a datasheet can detect from counts alone."""
    gaps = []
    if providers:
        top, n = providers.most_common(1)[0]
        if n / total > 0.5 and len(providers) > 1:
            gaps.append(f"One provider dominates: {top} supplies {n / total:.0%} of pairs.")
        elif len(providers) == 1:
            gaps.append(f"All pairs come from one provider ({top}): the model learns its cataloguing style.")
    dated = {k: v for k, v in centuries.items() if k != "undated"}
    if dated:
        top_c, n_c = Counter(dated).most_common(1)[0]
        if n_c / total > 0.4:
            gaps.append(f"Over-represented period: {top_c} ({n_c / total:.0%} of pairs).")
    if centuries.get("undated", 0) / max(total, 1) > 0.3:
        gaps.append(f"{centuries['undated'] / total:.0%} of pairs are undated.")
    biggest, n_big = per_manifest.most_common(1)[0] if per_manifest else ("", 0)
    if n_big / max(total, 1) > 0.2:
        gaps.append(f"One manifest holds {n_big / total:.0%} of pairs ({biggest}).")
    if len(langs) == 1:
        gaps.append(f"Captions are in one language only ({next(iter(langs))}).")
    if excluded.get("captionless"):
        gaps.append(
            f"{excluded['captionless']} captionless records were left out: uncatalogued material is unseen."
        )
    gaps.append(
        "Catalogue captions describe what cataloguers chose to record; subjects, people and places they "
        "did not name are absent, and older descriptions may use outdated or offensive terms."
    )
    return gaps
