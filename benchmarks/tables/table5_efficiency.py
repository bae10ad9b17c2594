"""Table 5: efficiency of every model on one dataset at one seed ratio (the same runs as table 2 or 3)."""
from __future__ import annotations

from collections import Counter

from benchmarks.tables.registry import DIRECTION, TABLES, model_label
from benchmarks.tables.render import Column, Group, Row, Table, data_notes, meta_cell, metric_cell, \
    missing_note, protocol_notes, run_notes
from benchmarks.tables.sweep import Context, RunRecord, RunSpec, dataset_label, group_records, make_spec
from benchmarks.tables.table2_fbdb import data_caption, ratio_header

NUMBER = 5
#: (column key, header, metadata key or "hits@1", better, format)
COLUMNS = (
    ("params", "Parameters", "n_parameters", "min", "int"),
    ("epoch_s", "Time/epoch (s)", "time_per_epoch_s", "min", "seconds"),
    ("train_s", "Training time (s)", "train_time_s", "min", "seconds"),
    ("epochs", "Epochs run", "epochs_run", None, "int"),
    ("peak_mb", "Peak memory (MB)", "peak_memory_mb", "min", "mb"),
    ("h1", "H@1", "hits@1", "max", "metric"),
)


def plan(ctx: Context) -> list[RunSpec]:
    ds, ratio = ctx.primary_dataset(), ctx.single_ratio()
    return [make_spec(ctx, model, ds, ratio, seed) for model in ctx.models for seed in ctx.seeds()]


def build(ctx: Context, runs: dict[str, RunRecord]) -> Table:
    ds, ratio = ctx.primary_dataset(), ctx.single_ratio()
    cells = group_records(plan(ctx), runs)
    columns = [Column(key, (header,), better=better, fmt=fmt) for key, header, _, better, fmt in COLUMNS]
    rows, used = [], []
    for model in ctx.models:
        recs = cells.get((model, ds, ratio, ""), [])
        used += recs
        row = {key: (metric_cell(recs, src, DIRECTION) if src == "hits@1" else meta_cell(recs, src))
               for key, _, src, _, _ in COLUMNS}
        rows.append(Row(model_label(model), row))
    kinds = Counter(str(r.metadata.get("peak_memory_kind", "unknown")) for r in used)
    threads = sorted({str(r.metadata.get("threads")) for r in used})
    launchers = Counter(_launcher(r) for r in used)
    caption = (f"Trainable parameters, mean time per epoch, total training time (the training loop with its "
               f"validations; no data loading, no test evaluation), peak memory and Hits@1 on "
               f"{dataset_label(ctx, ds)} at seed ratio {ratio_header(ratio)}. "
               f"{data_caption(ctx, ds)}")
    notes = run_notes(used, ctx.replicates)
    notes.append("Peak memory as recorded by each run (one process per run): "
                 + ", ".join(f"{k} ({v} runs)" for k, v in sorted(kinds.items()))
                 + "; child processes: " + ", ".join(f"{k} ({v} runs)" for k, v in sorted(launchers.items()))
                 + " (a forked child's peak RSS leaves out library pages it never touched)"
                 + f"; torch threads {', '.join(threads)}. Each model runs its profile's number of epochs unless "
                 f"validation stops it early (patience), so training time also reflects when it stopped.")
    notes += protocol_notes(used, {m: model_label(m) for m in ctx.models}) \
        + data_notes(used, {ds: dataset_label(ctx, ds)}) \
        + missing_note(plan(ctx), runs, {m: model_label(m) for m in ctx.models})
    return Table(NUMBER, f"{TABLES[NUMBER].title} ({dataset_label(ctx, ds)}, {ratio_header(ratio)})", caption,
                 columns, [Group(None, rows)], notes, replicates=ctx.replicates)


def _launcher(rec: RunRecord) -> str:
    """How the sweep started the run and how many ran at once (``sweep.json`` beside its results), or ``unknown``."""
    import json

    f = rec.path / "sweep.json"
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    jobs = int(d.get("jobs", 1))
    return str(d.get("launcher", "unknown")) + (f", {jobs} runs at a time" if jobs > 1 else "")
