"""Table 6: each design choice of docs/method.md against the alternative not taken (MIMEA, one seed ratio)."""
from __future__ import annotations

from typing import Any

from benchmarks.tables.registry import OURS, PRIMARY_DATASET, TABLES, model_label
from benchmarks.tables.render import Column, Group, Table
from benchmarks.tables.sweep import Context, RunRecord, RunSpec, dataset_label, make_spec
from benchmarks.tables.table2_fbdb import METRICS, data_caption, ratio_header
from benchmarks.tables.variant_rows import variant_notes, variant_rows

NUMBER = 6
#: (group title, MIMEA config field, our choice, the alternatives as (value, the other fields it needs)). Our choice
#: is MIMEA's default and runs with no override, so it is the same run as the full model of tables 2, 4 and 5.
#: The design study behind them (validation only): docs/design-log.md.
DESIGN: tuple[tuple[str, str, Any, tuple[tuple[Any, dict[str, Any]], ...]], ...] = (
    ("Fusion weights", "fusion_span", 0.25, ((0.5, {}), (None, {}))),
    ("Modality fusion", "fusion", "beta", (("softmax", {"fusion_span": None}),)),
    ("Unimodal-to-joint transport", "transport", "sinkhorn", (("identity", {}),)),
    ("Transport target", "ot_target", "joint", (("others", {}),)),
    ("Contrastive-loss weighting", "cl_weighting", "balanced", (("adaptive", {}), ("uncertainty", {}))),
)


def _defaults() -> dict[str, Any]:
    import dataclasses

    from mimea.models import registry

    try:
        return dataclasses.asdict(registry.get(OURS).Config())
    except KeyError:
        return {}


def _specs(ctx: Context) -> list[tuple[str, str, str, RunSpec]]:
    defaults = _defaults()
    out = []
    for title, field, ours, alternatives in DESIGN:
        choices = [(ours, {}), *alternatives]
        for value, extra in choices:
            tag = "ours" if defaults.get(field, ours) == value else "alternative"
            override = {} if defaults.get(field, ours) == value and not extra else {field: value, **extra}
            for ds in ctx.dataset_keys((PRIMARY_DATASET,)):
                for seed in ctx.seeds():
                    out.append((title, f"{field} = {value} ({tag})", ds,
                                make_spec(ctx, OURS, ds, ctx.single_ratio(), seed, override)))
    return out


def plan(ctx: Context) -> list[RunSpec]:
    return [s for *_, s in _specs(ctx)]


def build(ctx: Context, runs: dict[str, RunRecord]) -> Table:
    specs = _specs(ctx)
    datasets = ctx.dataset_keys((PRIMARY_DATASET,))
    columns = [Column(f"{ds}:{m}", (dataset_label(ctx, ds), name) if len(datasets) > 1 else (name,))
               for ds in datasets for m, name in METRICS]
    groups, used = variant_rows(specs, runs, datasets, ctx.single_ratio(), METRICS)
    caption = (f"{model_label(OURS)} with each design choice of docs/method.md replaced by its alternative (one at "
               f"a time), seed ratio {ratio_header(ctx.single_ratio())}; Hits@1, Hits@10, MRR on the test links. "
               + " ".join(data_caption(ctx, ds) for ds in datasets))
    notes = variant_notes(ctx, specs, runs, used, datasets)
    notes.append("The design study behind MIMEA's defaults (every variant tried, its validation metrics, the reading of "
                 "each module): docs/design-log.md; the equations: docs/method.md.")
    title = TABLES[NUMBER].title + ("" if len(datasets) > 1 else f" ({dataset_label(ctx, datasets[0])})")
    return Table(NUMBER, title, caption, columns, [Group(t, rows) for t, rows in groups.items()], notes,
                 stub="Choice", bold_scope="group", replicates=ctx.replicates)
