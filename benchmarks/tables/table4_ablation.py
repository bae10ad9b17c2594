"""Table 4: ablation of MIMEA: without each module, without each modality (both datasets, one seed ratio)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.tables.registry import OURS, TABLES, model_label
from benchmarks.tables.render import Column, Group, Table
from benchmarks.tables.sweep import Context, RunRecord, RunSpec, dataset_label, make_spec
from benchmarks.tables.table2_fbdb import METRICS, data_caption, ratio_header
from benchmarks.tables.variant_rows import variant_notes, variant_rows

NUMBER = 4
DATASETS = ("FBDB15K", "FBYG15K")
#: (MIMEA config values that switch the module off, row label). The interaction layer only feeds the fusion
#: weights, so plain-mean fusion switches it off too (MIMEA's Config rejects fusion=mean with interaction=True, and
#: with a fusion_span, which bounds the Beta weights only).
MODULES: tuple[tuple[dict[str, Any], str], ...] = (
    ({"fusion": "mean", "interaction": False, "fusion_span": None},
     "w/o probability-guided fusion (plain mean, no interaction)"),
    ({"transport": "none"}, "w/o optimal transport"),
    ({"cl_weighting": "uniform"}, "w/o adaptive contrastive weighting (uniform)"),
    ({"interaction": False}, "w/o intra-/inter-modal interaction"),
)
#: MIMEA's modalities when its Config cannot be read (the Config's own default wins).
FALLBACK_MODALITIES = ("graph", "relation", "attribute", "image")


def mimea_modalities() -> tuple[str, ...]:
    from mimea.models import registry

    try:
        return tuple(registry.get(OURS).Config().modalities)
    except (KeyError, AttributeError):
        return FALLBACK_MODALITIES


def variants() -> list[tuple[str | None, str, dict[str, Any]]]:
    """(group title, row label, MIMEA config overrides); the full model first, with no overrides."""
    out: list[tuple[str | None, str, dict[str, Any]]] = [(None, f"{model_label(OURS)}, full", {})]
    out += [("Without a module", label, dict(values)) for values, label in MODULES]
    mods = mimea_modalities()
    out += [("Without a modality", f"w/o {m}", {"modalities": tuple(x for x in mods if x != m)}) for m in mods]
    return out


def absent_modalities(ctx: Context, dataset: str) -> frozenset[str]:
    """The modalities a real data folder cannot feed: ``image`` when ``ROOT/pkls`` holds no feature file of it.

    Nothing for the synthetic stand-ins (they carry every modality), nor for a folder that is not here (a fresh
    clone rendering from committed records: the records' own ``modalities_skipped`` note says it then).
    """
    if ctx.synthetic or not (Path(ctx.data_dir) / dataset).is_dir():
        return frozenset()
    from mimea.data.images import find_image_file

    return frozenset() if find_image_file(Path(ctx.data_dir), dataset) is not None else frozenset({"image"})


def absent_modality_notes(ctx: Context) -> list[str]:
    """A note per dataset whose "w/o" row was not trained because the data have no features of that modality."""
    out = []
    for ds in ctx.dataset_keys(DATASETS):
        for m in sorted(absent_modalities(ctx, ds)):
            out.append(f"{dataset_label(ctx, ds)}: 'w/o {m}' is n/a, not trained: the data have no {m} features "
                       f"(MIMEA would skip the modality), so that run would be the full model again and no "
                       f"measurement of the {m} modality.")
    return out


def skipped_modality_notes(ctx: Context, used: list[RunRecord]) -> list[str]:
    """A note per dataset whose runs skipped a modality (no features of it): its "w/o" row is the full model.

    Modalities the data folder is known to lack are left to :func:`absent_modality_notes` (their row is n/a).
    """
    skipped: dict[str, set[str]] = {}
    for r in used:
        skipped.setdefault(r.spec.dataset, set()).update(
            (r.metadata.get("protocol") or {}).get("modalities_skipped") or ())
    out = []
    for ds, mods in sorted(skipped.items()):
        mods = mods - absent_modalities(ctx, ds)
        if mods:
            out.append(f"{dataset_label(ctx, ds)}: MIMEA skipped the {', '.join(sorted(mods))} modality (the data "
                       f"have no features of it), so its 'w/o {'/'.join(sorted(mods))}' row would train the full "
                       f"model again; it is not a measurement of that modality.")
    return out


def _specs(ctx: Context) -> list[tuple[str | None, str, str, RunSpec]]:
    """Every (row, dataset, seed) run; a "w/o M" row has none on a dataset without features of M."""
    ratio = ctx.single_ratio()
    mods = mimea_modalities()
    absent = {ds: absent_modalities(ctx, ds) for ds in ctx.dataset_keys(DATASETS)}
    out = []
    for group, label, ov in variants():
        for ds in ctx.dataset_keys(DATASETS):
            left_out = set(mods) - set(ov.get("modalities", mods))
            if left_out and left_out <= absent[ds]:
                continue
            out += [(group, label, ds, make_spec(ctx, OURS, ds, ratio, seed, ov)) for seed in ctx.seeds()]
    return out


def plan(ctx: Context) -> list[RunSpec]:
    return [s for *_, s in _specs(ctx)]


def build(ctx: Context, runs: dict[str, RunRecord]) -> Table:
    specs = _specs(ctx)
    datasets = ctx.dataset_keys(DATASETS)
    columns = [Column(f"{ds}:{m}", (dataset_label(ctx, ds), name)) for ds in datasets for m, name in METRICS]
    groups, used = variant_rows(specs, runs, datasets, ctx.single_ratio(), METRICS,
                                labels=[(group, label) for group, label, _ in variants()])
    caption = (f"{model_label(OURS)} with one module switched off or one modality left out, seed ratio "
               f"{ratio_header(ctx.single_ratio())}; Hits@1, Hits@10, MRR on the test links. "
               + " ".join(data_caption(ctx, ds) for ds in datasets))
    notes = variant_notes(ctx, specs, runs, used, datasets)
    notes += absent_modality_notes(ctx) + skipped_modality_notes(ctx, used)
    notes.append("The design study behind MIMEA's defaults (every variant tried, its validation metrics, the reading of "
                 "each module): docs/design-log.md; the equations: docs/method.md.")
    return Table(NUMBER, TABLES[NUMBER].title, caption, columns,
                 [Group(title, rows) for title, rows in groups.items()], notes, stub="Variant",
                 replicates=ctx.replicates)
