"""Table 3: main results on FB15K-YAGO15K, in table 2's layout."""
from __future__ import annotations

from benchmarks.tables.render import Table
from benchmarks.tables.sweep import Context, RunRecord, RunSpec
from benchmarks.tables.table2_fbdb import build_main, plan_main

NUMBER = 3
DATASET = "FBYG15K"


def plan(ctx: Context) -> list[RunSpec]:
    return plan_main(ctx, DATASET)


def build(ctx: Context, runs: dict[str, RunRecord]) -> Table:
    return build_main(ctx, runs, DATASET, NUMBER)
