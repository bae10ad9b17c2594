"""Rows of MIMEA variants (tables 4 and 6): one row per (group, label), one cell block per dataset."""
from __future__ import annotations

from benchmarks.tables.registry import DIRECTION, OURS, model_label
from benchmarks.tables.render import Cell, Row, data_notes, metric_cell, missing_note, protocol_notes, run_notes
from benchmarks.tables.sweep import Context, RunRecord, RunSpec, dataset_label, group_records


def variant_rows(specs: list[tuple[str | None, str, str, RunSpec]], runs: dict[str, RunRecord],
                 datasets: tuple[str, ...], ratio: float,
                 metrics: tuple[tuple[str, str], ...], labels: list[tuple[str | None, str]] | None = None,
                 ) -> tuple[dict[str | None, list[Row]], list[RunRecord]]:
    """``specs``: (group title, row label, dataset, spec), in display order.

    ``labels``: every (group, label) row in display order (default: those of ``specs``); a row without a spec
    on a dataset (a run that would measure nothing there) gets ``n/a`` cells.
    Returns the rows per group (cells keyed ``"<dataset>:<metric>"``, mean ± std over the replicates found) and
    the distinct run records used.
    """
    groups: dict[str | None, list[Row]] = {}
    used: dict[str, RunRecord] = {}
    order = labels if labels is not None else [(g, lab) for g, lab, _d, _s in specs]
    for group, label in dict.fromkeys(order):
        cells = {}
        for ds in datasets:
            mine = [s for g, lab, d, s in specs if g == group and lab == label and d == ds]
            if not mine:
                cells.update((f"{ds}:{m}", Cell(text="n/a")) for m, _ in metrics)
                continue
            recs = group_records(mine, runs).get((OURS, ds, ratio, mine[0].variant), [])
            used.update((r.spec.run_id, r) for r in recs)
            for m, _ in metrics:
                cells[f"{ds}:{m}"] = metric_cell(recs, m, DIRECTION)
        groups.setdefault(group, []).append(Row(label, cells))
    return groups, list(used.values())


def variant_notes(ctx: Context, specs: list[tuple[str | None, str, str, RunSpec]], runs: dict[str, RunRecord],
                  used: list[RunRecord], datasets: tuple[str, ...]) -> list[str]:
    """The notes under a table of MIMEA variants: runs, protocol, data deviations, unfinished runs."""
    labels = {OURS: model_label(OURS)}
    return run_notes(used, ctx.replicates) + protocol_notes(used, labels) \
        + data_notes(used, {ds: dataset_label(ctx, ds) for ds in datasets}) \
        + missing_note([s for *_, s in specs], runs, labels)
