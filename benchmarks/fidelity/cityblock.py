"""GCN-Align's test protocol (the authors' ``metrics.py:get_hits``), as ranks: one function for both sides.

The authors rank with ``scipy.spatial.distance.cdist(Lvec, Rvec, metric="cityblock")`` over the test pairs only:
row ``i`` (the left entity of pair ``i``) against the right entities of every test pair, in pair order (an
entity linked twice is two candidates), gold = column ``i``; and the same column-wise (right to left). They print
Hits@1/10/50/100 per direction (the position of ``i`` in ``argsort``), no MRR.

Here a rank is ``#{candidates strictly closer than the gold}`` (0-based; equal to their ``argsort`` position when
no distance ties the gold's), and :func:`metrics` turns ranks into Hits@k, MR and MRR. The fidelity shim applies
:func:`ranks_from_distance` to the very matrix their ``get_hits`` computed (so its MRR belongs to their printed
Hits); our side applies :func:`ranks` to our embedding (``benchmarks/fidelity/ours_eval.py``), which builds the
same matrix in row chunks with the same ``cdist``. numpy and scipy only (the shim runs in the authors' venv).
"""
from __future__ import annotations

import numpy as np

KS = (1, 10, 50, 100)


def ranks_from_distance(dist: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``(rank_l2r, rank_r2l)`` from a square distance matrix whose diagonal holds the gold pairs."""
    dist = np.asarray(dist)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1] or dist.shape[0] == 0:
        raise ValueError(f"expected a non-empty square distance matrix, got shape {dist.shape}")
    n = dist.shape[0]
    return _count(((a, dist[a:a + chunk]) for a in range(0, n, chunk)), dist[np.arange(n), np.arange(n)])


def _count(blocks, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks from row blocks ``(first row, distances [rows, n])`` of the distance matrix and its diagonal ``gold``:
    per row and per column, the candidates strictly closer than the gold."""
    n = len(gold)
    l2r = np.empty(n, dtype=np.int64)
    r2l = np.zeros(n, dtype=np.int64)
    for a, block in blocks:
        l2r[a:a + len(block)] = (block < gold[a:a + len(block), None]).sum(axis=1)
        r2l += (block < gold[None, :]).sum(axis=0)
    return l2r, r2l


def ranks(left: np.ndarray, right: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``(rank_l2r, rank_r2l)`` of pairs ``(left[i], right[i])`` by Manhattan distance, without the n x n matrix.

    Each chunk of rows is ``cdist(left[rows], right, "cityblock")``, the function (and so the float64 sums) the
    authors use; the gold distance of pair ``i`` is ``cdist(left[i:i+1], right[i:i+1])``, bit for bit the entry of
    the full matrix (scipy sums each pair the same way whatever the shape; checked on scipy 1.17).
    """
    from scipy.spatial.distance import cdist

    left, right = np.asarray(left), np.asarray(right)
    if left.ndim != 2 or left.shape != right.shape or left.shape[0] == 0:
        raise ValueError(f"left and right must be non-empty [n, d] arrays of one shape, got {left.shape} and "
                         f"{right.shape}")
    n = left.shape[0]
    gold = np.array([cdist(left[i:i + 1], right[i:i + 1], metric="cityblock")[0, 0] for i in range(n)])
    return _count(((a, cdist(left[a:a + chunk], right, metric="cityblock")) for a in range(0, n, chunk)), gold)


def metrics(rank_l2r: np.ndarray, rank_r2l: np.ndarray, ks=KS) -> dict:
    """``{"l2r": {hits@k..., mr, mrr}, "r2l": {...}, "mean": {...}}`` from 0-based ranks (Hits@k: rank < k)."""
    out = {}
    for name, r in (("l2r", rank_l2r), ("r2l", rank_r2l)):
        r = np.asarray(r, dtype=np.float64)
        d = {f"hits@{k}": round(float((r < k).mean()), 6) for k in ks}
        d["mr"] = round(float((r + 1).mean()), 4)
        d["mrr"] = round(float((1.0 / (r + 1)).mean()), 6)
        out[name] = d
    out["mean"] = {k: round((out["l2r"][k] + out["r2l"][k]) / 2, 6) for k in out["l2r"]}
    return out


def format_line(epoch: int, view: str, m: dict, seconds: float | None = None) -> str:
    """The shim's one-line record of one test (parsed by ``parse.parse_gcn_align``)."""
    parts = [f"[fidelity-shim] cityblock epoch={epoch} view={view}"]
    for d in ("l2r", "r2l"):
        parts.append(d + " " + " ".join(f"{k}={v}" for k, v in m[d].items()))
    if seconds is not None:
        parts.append(f"time={seconds:.3f}")
    return " | ".join(parts)
