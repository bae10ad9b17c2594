"""Chunked nearest neighbours between two entity sets: top-k candidates and mutual nearest neighbours.

``mutual_nearest_neighbours`` gives the pseudo-seeds of iterative training (EVA/MCLEA/MEAformer "IL": pairs of
not-yet-aligned entities that are each other's top-1). Scores are those of :mod:`mimea.evaluation.ranking`
(cosine on L2-normalised rows, or CSLS with the radii over the two given sets); the ``n x n`` matrix is never
built. Among exactly tied scores the first one in the given id order wins (``torch.argmax`` semantics).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mimea.evaluation.ranking import (
    ColumnTopK,
    check_embedding,
    check_ids,
    check_similarity,
    csls_radii,
    matmul_t,
    normalise,
    row_chunks,
    topk_mean,
)


def _entity_sets(emb: Tensor, left_ids: Tensor, right_ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validated ``(left_ids, right_ids)`` on ``emb.device`` and their normalised embeddings."""
    if not isinstance(emb, Tensor) or emb.dim() != 2:
        raise ValueError(f"emb must be a 2-D float tensor [N, d], got {getattr(emb, 'shape', type(emb))}")
    ids = []
    for name, t in (("left_ids", left_ids), ("right_ids", right_ids)):
        if not isinstance(t, Tensor) or t.dim() != 1:
            raise ValueError(f"{name} must be a 1-D id tensor, got {getattr(t, 'shape', type(t))}")
        check_ids(t, emb.shape[0], name)
        t = t.to(device=emb.device, dtype=torch.long)
        if torch.unique(t).numel() != t.numel():
            raise ValueError(f"{name} holds duplicate ids")
        ids.append(t)
    left, right = emb[ids[0]], emb[ids[1]]
    check_embedding(left)
    check_embedding(right)
    return ids[0], ids[1], normalise(left), normalise(right)


@torch.no_grad()
def nearest_neighbours(
    emb: Tensor,
    left_ids: Tensor,
    right_ids: Tensor,
    *,
    k: int = 10,
    similarity: str = "csls",
    csls_k: int = 3,
    chunk_size: int = 4096,
) -> tuple[Tensor, Tensor]:
    """The ``k`` best right entities of every left entity.

    Returns ``(scores [nL, k'], ids [nL, k'])`` with ``k' = min(k, len(right_ids))``, best first; ``ids`` are
    global ids from ``right_ids``; scores are the full cosine or CSLS values. Exact ties inside the top-k are
    ordered by position in ``right_ids``; which of several candidates tied at the k-th place is kept is
    ``torch.topk``'s choice.
    """
    check_similarity(similarity, csls_k, chunk_size)
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    left_ids, right_ids, left, right = _entity_sets(emb, left_ids, right_ids)
    csls = similarity == "csls"
    r_left, r_right = csls_radii(left, right, int(csls_k), int(chunk_size)) if csls else (None, None)
    kk = min(int(k), right.shape[0])
    scores = torch.empty(left.shape[0], kk, dtype=left.dtype, device=left.device)
    cols = torch.empty(left.shape[0], kk, dtype=torch.long, device=left.device)
    for s, e in row_chunks(left.shape[0], int(chunk_size)):
        sim = matmul_t(left[s:e], right)
        if csls:
            sim.mul_(2).sub_(r_right)
        top = sim.topk(kk, dim=1, sorted=True)
        idx = top.indices.sort(dim=1).indices                       # ties: lower column first...
        val, col = top.values.gather(1, idx), top.indices.gather(1, idx)
        order = val.sort(dim=1, descending=True, stable=True).indices   # ...kept by the stable value sort
        scores[s:e] = val.gather(1, order) - (r_left[s:e, None] if csls else 0)
        cols[s:e] = col.gather(1, order)
    return scores, right_ids[cols]


@torch.no_grad()
def mutual_nearest_neighbours(
    emb: Tensor,
    left_ids: Tensor,
    right_ids: Tensor,
    *,
    similarity: str = "csls",
    csls_k: int = 3,
    chunk_size: int = 4096,
) -> Tensor:
    """Pairs ``(left id, right id)`` that are each other's top-1, as ``LongTensor [m, 2]`` in ``left_ids`` order
    (empty when either set is empty).

    Two passes of row chunks over ``left x right`` (one for cosine): pass 1 gives the CSLS radii and, since a
    left chunk's radii are complete once the chunk is seen, each right entity's best left; pass 2 gives each left
    entity's best right (it needs the right radii, known only after pass 1).
    """
    check_similarity(similarity, csls_k, chunk_size)
    if any(isinstance(t, Tensor) and t.numel() == 0 for t in (left_ids, right_ids)):
        return torch.empty(0, 2, dtype=torch.long, device=emb.device)   # nothing left to pair (late IL rounds)
    left_ids, right_ids, left, right = _entity_sets(emb, left_ids, right_ids)
    csls, k, size = similarity == "csls", int(csls_k), int(chunk_size)
    n_left, dev = left.shape[0], left.device
    best_left_val = torch.full((right.shape[0],), float("-inf"), dtype=left.dtype, device=dev)
    best_left = torch.zeros(right.shape[0], dtype=torch.long, device=dev)
    best_right = torch.empty(n_left, dtype=torch.long, device=dev)
    cols = ColumnTopK(k)
    for s, e in row_chunks(n_left, size):
        sim = matmul_t(left[s:e], right)
        if csls:
            cols.update(sim)
            r_left = topk_mean(sim, k)
            sim.mul_(2).sub_(r_left[:, None])             # right-to-left score: 2 cos - r_L (r_R is constant)
        else:
            best_right[s:e] = sim.argmax(dim=1)
        val, idx = sim.max(dim=0)
        better = val > best_left_val                      # strict: an earlier chunk keeps a tie
        best_left_val = torch.where(better, val, best_left_val)
        best_left = torch.where(better, idx + s, best_left)
    if csls:
        r_right = cols.mean()
        for s, e in row_chunks(n_left, size):
            best_right[s:e] = matmul_t(left[s:e], right).mul_(2).sub_(r_right).argmax(dim=1)
    rows = torch.arange(n_left, device=dev)
    mutual = best_left[best_right] == rows
    return torch.stack([left_ids[mutual], right_ids[best_right[mutual]]], dim=1)
