"""Per-pair prediction export: one CSV row per test pair with its left-to-right rank and top-k candidates."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch
from torch import Tensor

from mimea.atomic import atomic_write_text
from mimea.evaluation.neighbours import nearest_neighbours
from mimea.evaluation.ranking import evaluate

#: CSV columns, in order. ``top_ids``/``top_names`` are the top-k left-to-right candidates joined by ``|``.
COLUMNS = ("left_id", "right_id", "left_name", "right_name", "rank_l2r", "top_ids", "top_names")


@torch.no_grad()
def export_predictions(
    emb: Tensor,
    pairs: Tensor,
    path: str | os.PathLike,
    *,
    names: list[str] | None = None,
    similarity: str = "csls",
    csls_k: int = 3,
    top_k: int = 10,
    chunk_size: int = 4096,
) -> Path:
    """Write the left-to-right predictions of ``pairs`` to ``path`` (CSV, UTF-8, header row), atomically.

    Ranks and candidates follow :func:`mimea.evaluation.evaluate` (candidates: the distinct right ids of
    ``pairs``; realistic rank on ties). ``names`` is indexed by global entity id (e.g. ``MMKGPair.entity_names``);
    without it the name columns are empty. Returns the path written.
    """
    if names is not None and len(names) < emb.shape[0]:
        raise ValueError(f"names has {len(names)} entries for {emb.shape[0]} entities")
    result = evaluate(emb, pairs, similarity=similarity, csls_k=csls_k, chunk_size=chunk_size, return_ranks=True)
    pairs = pairs.to(device=emb.device, dtype=torch.long)
    left_u, row_of = torch.unique(pairs[:, 0], return_inverse=True)
    _, top = nearest_neighbours(emb, left_u, torch.unique(pairs[:, 1]), k=top_k, similarity=similarity,
                                csls_k=csls_k, chunk_size=chunk_size)
    top = top[row_of].tolist()

    def name(i: int) -> str:
        return names[i] if names is not None else ""

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for (left, right), rank, cands in zip(pairs.tolist(), result["ranks_l2r"].tolist(), top):
        writer.writerow([left, right, name(left), name(right), format(rank, ".10g"),
                         "|".join(map(str, cands)), "|".join(name(c) for c in cands) if names is not None else ""])
    out = Path(path)
    atomic_write_text(out, buf.getvalue())
    return out
