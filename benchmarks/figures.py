"""The paper's figures (PNG and PDF, matplotlib Agg), drawn from whatever runs an invocation's tables collected.

* ``fig_hits_vs_ratio``     H@1 against seed ratio per model (one panel per dataset; error bars: std)
* ``fig_hits_vs_time``      H@1 against total training time per model (one dataset, one ratio)
* ``fig_training_curves``   validation MRR against epoch per model (one dataset, one ratio, lowest seed)
* ``fig_modality_weights``  MIMEA's learned modality weights on the test entities, per modality (box plots)

A figure whose runs are absent is skipped (and said so). Files are written atomically.
"""
from __future__ import annotations

import io
import statistics
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mimea.store.atomic import atomic_write_bytes  # noqa: E402

from benchmarks.tables.registry import DIRECTION, MODELS, OURS, model_label  # noqa: E402
from benchmarks.tables.sweep import Context, RunRecord, dataset_label  # noqa: E402

FORMATS = ("png", "pdf")


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in FORMATS:
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150, bbox_inches="tight", metadata={"CreationDate": None}
                    if ext == "pdf" else None)
        path = out_dir / f"{stem}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _order(models: Iterable[str]) -> list[str]:
    models = set(models)
    return [m for m in MODELS if m in models] + sorted(models - set(MODELS))


def _main(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Runs of a model with its own defaults (no ablation or design variant)."""
    return [r for r in records if r.spec.variant == ""]


def _focus(ctx: Context, records: list[RunRecord]) -> tuple[str, float] | None:
    """(dataset, ratio) the single-panel figures show: the primary dataset and ratio when present."""
    if not records:
        return None
    pairs = {(r.spec.dataset, r.spec.ratio) for r in records}
    want = (ctx.primary_dataset(), ctx.single_ratio())
    if want in pairs:
        return want
    return max(pairs, key=lambda p: (sum(1 for r in records if (r.spec.dataset, r.spec.ratio) == p), -p[1]))


def hits_vs_ratio(ctx: Context, records: list[RunRecord], out_dir: Path) -> list[Path]:
    recs = _main(records)
    datasets = sorted({r.spec.dataset for r in recs})
    if not datasets:
        return []
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        mine = [r for r in recs if r.spec.dataset == ds]
        for model in _order(r.spec.model for r in mine):
            pts = []
            for ratio in sorted({r.spec.ratio for r in mine if r.spec.model == model}):
                vals = [v for r in mine if r.spec.model == model and r.spec.ratio == ratio
                        if (v := r.metric("hits@1", DIRECTION)) is not None]
                if vals:
                    pts.append((ratio * 100, *_mean_std(vals)))
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=model_label(model))
        ax.set_title(dataset_label(ctx, ds))
        ax.set_xlabel("seed ratio (%)")
        ax.set_ylabel("H@1 (test)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    return _save(fig, out_dir, "fig_hits_vs_ratio")


def _at_focus(ctx: Context, records: list[RunRecord]) -> tuple[tuple[str, float] | None, list[RunRecord]]:
    """(dataset, ratio) the single-panel figures show, and the main-table runs there; (None, []) if none."""
    recs = _main(records)
    focus = _focus(ctx, recs)
    if focus is None:
        return None, []
    return focus, [r for r in recs if (r.spec.dataset, r.spec.ratio) == focus]


def _finish_focus(fig, ax, ctx: Context, focus: tuple[str, float], xlabel: str, ylabel: str, out_dir: Path,
                  name: str) -> list[Path]:
    """Labels, the (dataset, ratio) title, grid and legend of a single-panel figure; then save it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{dataset_label(ctx, focus[0])}, {focus[1] * 100:g}% seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out_dir, name)


def hits_vs_time(ctx: Context, records: list[RunRecord], out_dir: Path) -> list[Path]:
    focus, mine = _at_focus(ctx, records)
    if focus is None:
        return []
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    xs = []
    for model in _order(r.spec.model for r in mine):
        rs = [r for r in mine if r.spec.model == model and r.metric("hits@1", DIRECTION) is not None]
        if not rs:
            continue
        tx, ex = _mean_std([float(r.metadata.get("train_time_s", 0.0)) for r in rs])
        hy, ey = _mean_std([r.metric("hits@1", DIRECTION) for r in rs])
        ax.errorbar([tx], [hy], xerr=[ex], yerr=[ey], marker="o", capsize=3, linestyle="none",
                    label=model_label(model))
        xs.append(tx)
    if xs and min(xs) > 0 and max(xs) / min(xs) > 10:
        ax.set_xscale("log")
    return _finish_focus(fig, ax, ctx, focus, "total training time (s)", "H@1 (test)", out_dir, "fig_hits_vs_time")


def training_curves(ctx: Context, records: list[RunRecord], out_dir: Path) -> list[Path]:
    focus, mine = _at_focus(ctx, records)
    if focus is None:
        return []
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for model in _order(r.spec.model for r in mine):
        rs = sorted((r for r in mine if r.spec.model == model), key=lambda r: r.spec.seed)
        if not rs:
            continue
        pts = [(h["epoch"], h["valid"]["mrr"]) for h in rs[0].results.get("curve", [])
               if isinstance(h.get("valid"), dict) and h["valid"].get("mrr") is not None]
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, marker=".", label=f"{model_label(model)} (seed {rs[0].spec.seed})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish_focus(fig, ax, ctx, focus, "epoch", "validation MRR (mean of both directions)", out_dir, "fig_training_curves")


def modality_weights(ctx: Context, records: list[RunRecord], out_dir: Path) -> list[Path]:
    import torch

    recs = [r for r in _main(records) if r.spec.model == OURS and (r.path / "modality_weights.pt").is_file()]
    focus = _focus(ctx, recs)
    if focus is None:
        return []
    names: list[str] | None = None
    chunks = []
    for r in sorted((r for r in recs if (r.spec.dataset, r.spec.ratio) == focus), key=lambda r: r.spec.seed):
        obj = torch.load(r.path / "modality_weights.pt", map_location="cpu", weights_only=True)
        if names is None:
            names = list(obj["names"])
        if list(obj["names"]) == names:
            chunks.append(obj["weights"].float())
    if not chunks or not names:
        return []
    w = torch.cat(chunks).numpy()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.6))
    ax.boxplot([w[:, i] for i in range(w.shape[1])], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel("modality weight")
    ax.set_title(f"{model_label(OURS)}: test entities of {len(chunks)} run(s), {dataset_label(ctx, focus[0])}, "
                 f"{focus[1] * 100:g}%", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out_dir, "fig_modality_weights")


FIGURE_BUILDERS = {
    "fig_hits_vs_ratio": hits_vs_ratio,
    "fig_hits_vs_time": hits_vs_time,
    "fig_training_curves": training_curves,
    "fig_modality_weights": modality_weights,
}


def write_figures(ctx: Context, records: Iterable[RunRecord], out_dir: str | Path) -> dict[str, list[Path]]:
    """Draw every figure the records allow into ``out_dir``; figure stem -> files written (empty: skipped)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = list({r.spec.run_id: r for r in records}.values())
    return {stem: build(ctx, records, out_dir) for stem, build in FIGURE_BUILDERS.items()}
