"""The one place that numbers the paper's tables and names the models, datasets and figures they use.

docs/tables.md states the same numbering; the README copies it from there. Nothing else hard-codes a table number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

#: Every model the tables compare, in row order (registry names). MIMEA (ours) last.
MODELS: tuple[str, ...] = ("gcn_align", "eva", "mclea", "meaformer", "msnea", "mimea")
#: The model the ablation (table 4) and design (table 6) tables vary.
OURS = "mimea"

#: Display names (rows, legends).
MODEL_LABELS: Mapping[str, str] = MappingProxyType({
    "gcn_align": "GCN-Align", "eva": "EVA", "mclea": "MCLEA", "meaformer": "MEAformer", "msnea": "MSNEA",
    "mimea": "MIMEA (ours)",
})


def model_label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


@dataclass(frozen=True)
class DatasetDef:
    """A benchmark a table is about, and the synthetic stand-in used when no real data is given.

    key: the real dataset's folder name (``ROOT/<key>/norm``); label: its name in the papers;
    synthetic: keyword arguments of ``mimea.data.synthetic`` for the stand-in; synthetic_tag: its name in captions.
    """

    key: str
    label: str
    kg_labels: tuple[str, str]
    synthetic: Mapping[str, object] = field(default_factory=dict)
    synthetic_tag: str = "A"


#: The two benchmarks. Without a data folder, FB15K-DB15K runs on the embedded synthetic default (params A, the
#: generator's own defaults) and FB15K-YAGO15K on a second synthetic pair (params B: another generator seed).
DATASETS: Mapping[str, DatasetDef] = MappingProxyType({
    "FBDB15K": DatasetDef("FBDB15K", "FB15K-DB15K", ("FB15K", "DB15K"), {}, "A"),
    "FBYG15K": DatasetDef("FBYG15K", "FB15K-YAGO15K", ("FB15K", "YAGO15K"), {"seed": 1}, "B"),
})
#: The dataset of the single-dataset tables (5, 6) unless ``--dataset`` names another.
PRIMARY_DATASET = "FBDB15K"

#: Seed ratios of the main tables; the single-ratio tables (4, 5, 6) use :data:`SINGLE_RATIO`.
RATIOS: tuple[float, ...] = (0.2, 0.5, 0.8)
SINGLE_RATIO = 0.2
#: Replicates (fresh init seeds 0..R-1, the split fixed) when ``--replicates`` is not given. Chosen so that
#: ``nox -s reproduce`` (all six tables, synthetic default, smoke profile) takes minutes on a 2-core CPU.
DEFAULT_REPLICATES = 1
#: Which test direction the tables report (the lineage reports KG1 -> KG2).
DIRECTION = "l2r"


@dataclass(frozen=True)
class TableDef:
    number: int
    module: str           # module under benchmarks.tables with ``plan(ctx)`` and ``build(ctx, runs)``
    title: str


TABLES: Mapping[int, TableDef] = MappingProxyType({
    1: TableDef(1, "table1_datasets", "Dataset statistics"),
    2: TableDef(2, "table2_fbdb", "Main results on FB15K-DB15K"),
    3: TableDef(3, "table3_fbyg", "Main results on FB15K-YAGO15K"),
    4: TableDef(4, "table4_ablation", "Ablation of MIMEA's modules and modalities"),
    5: TableDef(5, "table5_efficiency", "Efficiency"),
    6: TableDef(6, "table6_design", "Design variants of MIMEA"),
})

#: Figures: file stem -> what it shows. Each is drawn from whatever runs the invocation's tables collected.
FIGURES: Mapping[str, str] = MappingProxyType({
    "fig_hits_vs_ratio": "H@1 against seed ratio, per model",
    "fig_hits_vs_time": "H@1 against total training time, per model",
    "fig_training_curves": "validation MRR against epoch, per model",
    "fig_modality_weights": "distribution of MIMEA's learned modality weights, per modality",
})


def table_module(number: int):
    """The module that plans and builds table ``number``."""
    from importlib import import_module

    if number not in TABLES:
        raise KeyError(f"no table {number}; tables: {', '.join(map(str, TABLES))}")
    return import_module(f"benchmarks.tables.{TABLES[number].module}")
