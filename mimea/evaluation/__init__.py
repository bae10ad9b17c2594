"""Evaluation: chunked ranking with CSLS and realistic tie ranks, nearest neighbours, prediction export.

See ``docs/evaluation.md`` for the protocol.
"""
from mimea.evaluation.export import export_predictions
from mimea.evaluation.neighbours import mutual_nearest_neighbours, nearest_neighbours
from mimea.evaluation.ranking import SIMILARITIES, evaluate, metrics_from_ranks

__all__ = [
    "SIMILARITIES",
    "evaluate",
    "export_predictions",
    "metrics_from_ranks",
    "mutual_nearest_neighbours",
    "nearest_neighbours",
]
