"""Chunked ranking evaluation of an alignment embedding: Hits@k, MRR and MR in both directions.

Protocol (see ``docs/evaluation.md``):

* **Queries and candidates.** Every test pair ``(l, r)`` is one left-to-right query (``l`` ranked against the
  test entities of KG2, gold ``r``) and one right-to-left query (``r`` against the test entities of KG1, gold
  ``l``). The candidate set of a direction is the set of *distinct* ids of the other column of ``pairs``; an
  entity linked twice (FBDB15K has 4 such KG2 entities) is one candidate, and each of its pairs is a separate
  query whose other gold entity competes as an ordinary candidate.
* **Similarity.** Cosine on L2-normalised embeddings, or CSLS(k) = ``2 cos(x, y) - r_L(x) - r_R(y)`` with
  ``r`` the mean of an entity's top-k cosine to the other side's candidates (k is clipped to the candidate
  count). A term that is constant over one query's candidates (``r_L`` for a left query, ``r_R`` for a right
  query) cannot change that query's rank and is not subtracted, which saves a pass and a rounding.
* **Ties** get the *realistic* rank ``1 + #greater + #equal_others / 2``: the mean of the optimistic and the
  pessimistic rank (ranks are floats; Hits@k counts ``rank <= k``, so a two-way tie at the top is not a hit@1).
  It is computed as ``(m + 1 + sum_j sign(s_j - g)) / 2`` over the ``m`` candidates (see :func:`sign_sums_`).
* **Gold score.** Read from the very similarity chunk that is ranked, never recomputed: a separately computed
  dot product differs in the last bits and was measured to turn ~35% of rank-1 hits into rank 2.

Cost: two passes of row chunks over the ``n x n`` similarity, i.e. two matrix products for CSLS (pass 1: the
radii ``r_L``, ``r_R`` and the right-to-left counts whose gold row was already seen; pass 2: the left-to-right
ranks and the rest of the right-to-left counts) and one and a half for cosine. Memory is a few
``chunk_size x n`` buffers; the ``n x n`` matrix never exists, unless it fits :data:`KEEP_BYTES` (512 MiB by
default): then pass 1 keeps it and pass 2 reads it back, one product in all, the same ranks to the bit.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Similarities understood by :func:`evaluate` and :mod:`mimea.evaluation.neighbours`.
SIMILARITIES = ("cosine", "csls")
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


# ----------------------------------------------------------------------------------------------- checks
def check_similarity(similarity: str, csls_k: int, chunk_size: int) -> None:
    """Raise a one-line ``ValueError`` for an unknown similarity, ``csls_k < 1`` or ``chunk_size < 1``."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if int(csls_k) < 1:
        raise ValueError(f"csls_k must be >= 1, got {csls_k}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def check_embedding(emb: Tensor) -> None:
    """Raise a one-line ``ValueError`` unless ``emb`` is a finite 2-D float tensor."""
    if not isinstance(emb, Tensor) or emb.dim() != 2 or not emb.is_floating_point():
        raise ValueError(f"emb must be a 2-D float tensor [N, d], got {getattr(emb, 'shape', type(emb))}")
    if emb.numel():
        lo, hi = torch.aminmax(emb)  # one read-only pass; NaN and +-inf show up in min or max
        if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            raise ValueError("emb contains NaN or infinite values")


def check_ids(ids: Tensor, n_ent: int, what: str) -> None:
    """Raise a one-line ``ValueError`` unless ``ids`` is a non-empty integer tensor of ids in ``[0, n_ent)``."""
    if not isinstance(ids, Tensor) or ids.dtype not in _INT_DTYPES:
        raise ValueError(f"{what} must be an integer tensor, got {getattr(ids, 'dtype', type(ids))}")
    if ids.numel() == 0:
        raise ValueError(f"{what} is empty")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= n_ent:
        raise ValueError(f"{what} holds ids outside [0, {n_ent}): min {lo}, max {hi}")


# --------------------------------------------------------------------------------------------- helpers
#: Matrix product used for CPU float tensors: "numpy" (the BLAS numpy links, OpenBLAS in the wheels) or "torch".
#: On the 2-core AMD EPYC (AVX2) this was tuned on, a 1713 x 300 @ 300 x 10277 float32 product ran at 38 GFLOPS
#: per thread with numpy's OpenBLAS against 25 GFLOPS with torch's MKL (interleaved runs, 3 repeats), and the
#: products are most of the evaluation time. Either backend is deterministic on a given machine; switch with the
#: environment variable ``MIMEA_CPU_GEMM``. Other devices always use ``torch.mm``.
CPU_GEMM = os.environ.get("MIMEA_CPU_GEMM", "numpy")
if CPU_GEMM not in ("numpy", "torch"):
    raise ValueError(f"MIMEA_CPU_GEMM must be 'numpy' or 'torch', got {CPU_GEMM!r}")


#: Largest ``n_left x n_right`` similarity matrix (bytes) that :func:`evaluate` keeps whole between its two passes,
#: so that the second pass reads it instead of recomputing the matrix product (CSLS: one product instead of two).
#: The ranks are the same bits either way: the kept values ARE the first pass's products, and a recomputed chunk is
#: the same deterministic product. FBDB15K's 20 % test matrix (10,277 x 10,277 float32) is 403 MiB. Set with the
#: environment variable ``MIMEA_EVAL_KEEP_MB`` (0: never keep; always the chunked two-product algorithm).
KEEP_BYTES = int(float(os.environ.get("MIMEA_EVAL_KEEP_MB", "512")) * 2**20)
if KEEP_BYTES < 0:
    raise ValueError(f"MIMEA_EVAL_KEEP_MB must be >= 0, got {os.environ.get('MIMEA_EVAL_KEEP_MB')!r}")


def matmul_t(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``a @ b.T`` (written into ``out`` when given); see :data:`CPU_GEMM` for the CPU backend."""
    if out is None:
        out = torch.empty(a.shape[0], b.shape[0], dtype=a.dtype, device=a.device)
    if CPU_GEMM == "numpy" and a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64):
        np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
        return out
    return torch.mm(a, b.T, out=out)


def normalise(emb: Tensor) -> Tensor:
    """Detached, L2-normalised rows (float16/bfloat16 are upcast to float32; float64 stays float64)."""
    x = emb.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return F.normalize(x, p=2.0, dim=1)


def row_chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the fewest consecutive chunks of at most ``size`` rows covering ``0..n``, of equal
    sizes give or take one (10,277 rows at size 2048 are 6 chunks of ~1713, not 5 of 2048 and one of 37)."""
    count = -(-n // size)
    for i in range(count):
        yield i * n // count, (i + 1) * n // count


def topk_values(x: Tensor, k: int, dim: int) -> Tensor:
    """The ``k`` largest values along ``dim`` (0 or 1) of ``x [r, c]``, as ``[lines, min(k, length)]``, unordered.

    Exact, ties kept with their multiplicity, and faster than ``torch.topk`` on the chunk shapes used here
    (2048 x 10277, k=3, one thread of the 2-core CPU this was written on: rows 33 ms against 86 ms; columns
    ~130 ms against 513-622 ms). The pruning: split each line into groups; the ``k`` largest values of a line all
    lie in the ``k`` groups with the largest maxima (if ``j`` groups have a maximum ``>= v``, the chosen groups
    include ``min(j, k)`` of them, so at least ``min(#values >= v, k)`` values ``>= v`` survive, for every ``v``).
    Groups are chosen so that the group maxima are vectorised reductions: ``g`` consecutive rows for ``dim=0``,
    columns ``j, j+G, j+2G, ...`` for ``dim=1``.
    """
    lines, length = (x.shape[1], x.shape[0]) if dim == 0 else (x.shape[0], x.shape[1])
    k = min(k, length)
    g = max(1, int(math.sqrt(length / k) / (1 if dim == 0 else 4)))     # group size, tuned as measured above
    n_groups = length // g
    if n_groups <= k or g == 1:
        return (x.t() if dim == 0 else x).topk(k, dim=1, sorted=False).values
    offsets = torch.arange(g, device=x.device)
    if dim == 0:
        group_max = x[: n_groups * g].unflatten(0, (n_groups, g)).amax(dim=1)        # [G, c]
        best = group_max.t().contiguous().topk(k, dim=1, sorted=False).indices       # [c, k]
        idx = (best.unsqueeze(2) * g + offsets).flatten(1)                           # rows of those groups
        cand = torch.cat([x.t().gather(1, idx), x[n_groups * g:].t()], dim=1)
    else:
        group_max = x[:, : n_groups * g].unflatten(1, (g, n_groups)).amax(dim=1)     # [r, G]
        best = group_max.topk(k, dim=1, sorted=False).indices                        # [r, k]
        idx = (best.unsqueeze(2) + offsets * n_groups).flatten(1)                    # columns of those groups
        cand = torch.cat([x.gather(1, idx), x[:, n_groups * g:]], dim=1)
    return cand.topk(k, dim=1, sorted=False).values


def topk_mean(values: Tensor, k: int) -> Tensor:
    """Mean of each row's ``k`` largest values, summed in descending order (deterministic rounding)."""
    top = topk_values(values, k, dim=1)
    return top.sort(dim=1, descending=True).values.mean(dim=1)


class ColumnTopK:
    """Running top-k of every column of a matrix seen as row chunks; ``mean()`` gives the CSLS radius."""

    def __init__(self, k: int):
        self.k = k
        self.best: Tensor | None = None  # [m, <=k]

    def update(self, block: Tensor) -> None:
        top = topk_values(block, self.k, dim=0)
        if self.best is not None:
            top = torch.cat([self.best, top], dim=1)
            top = top.topk(min(self.k, top.shape[1]), dim=1, sorted=False).values
        self.best = top

    def mean(self) -> Tensor:
        assert self.best is not None, "ColumnTopK.mean() before any update()"
        return topk_mean(self.best, self.k)


def csls_radii(left: Tensor, right: Tensor, k: int, chunk_size: int) -> tuple[Tensor, Tensor]:
    """CSLS radii of normalised ``left [nL, d]`` and ``right [nR, d]``: (``r_L [nL]``, ``r_R [nR]``), chunked."""
    r_left = torch.empty(left.shape[0], dtype=left.dtype, device=left.device)
    cols = ColumnTopK(k)
    for s, e in row_chunks(left.shape[0], chunk_size):
        cos = matmul_t(left[s:e], right)
        r_left[s:e] = topk_mean(cos, k)
        cols.update(cos)
    return r_left, cols.mean()


def sign_sums_(scores: Tensor, gold: Tensor, dim: int, ones: Tensor | None = None) -> Tensor:
    """``sum sign(scores - gold)`` over ``dim`` (``gold`` broadcast), as float64; overwrites ``scores``.

    This one sum gives the realistic rank: with ``m`` candidates, ``#greater + #greater_or_equal`` equals
    ``m + sum sign(s - g)`` (a greater candidate adds 2, a tied one 1, a smaller one 0), so
    ``rank = 1 + #greater + (#equal - 1) / 2 = (m + 1 + sum sign(s - g)) / 2``. The sum of signs is exact in float32
    below 2**24 terms and is taken as a matrix-vector product with ones: on a 1713 x 10277 block on one thread of
    the 2-core CPU this was written on, sub + sign + mv took ~25 ms, against ~960 ms for summing two boolean masks.
    ``ones`` is an optional reusable vector of ones at least as long as ``scores.shape[dim]``.
    """
    d = scores.sub_(gold).sign_()
    if d.shape[dim] >= 2**24:
        return d.sum(dim=dim, dtype=torch.float64)
    if ones is None:
        ones = torch.ones(d.shape[dim], dtype=d.dtype, device=d.device)
    ones = ones[: d.shape[dim]]
    return (torch.mv(d, ones) if dim == 1 else torch.mv(d.t(), ones)).double()


class _Workspace:
    """A reusable flat buffer handing out contiguous ``[r, c]`` views (big allocations page-fault each time)."""

    def __init__(self, numel: int, like: Tensor):
        self.buf = torch.empty(numel, dtype=like.dtype, device=like.device)

    def view(self, rows: int, cols: int) -> Tensor:
        return self.buf[: rows * cols].view(rows, cols)


# ---------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class _Layout:
    """Rows (distinct left ids), columns (distinct right ids) and where every query's gold sits.

    Columns are ordered so that the *primary* right-to-left query of each column (its first pair) has a
    non-decreasing gold row: after row chunk ``[s, e)`` the columns whose gold was seen are the prefix
    ``[0, searchsorted(prim_r2l_row, e))``. Queries that are not the first of their row/column (duplicate ids)
    are *extra* queries, handled by gathering their row/column.
    """

    left_ids: Tensor        # [nL] global ids of the rows
    right_ids: Tensor       # [nR] global ids of the columns
    row: Tensor             # [n] row of pair p's left entity
    col: Tensor             # [n] column of pair p's right entity
    prim_l2r_pair: Tensor   # [nL] pair whose left-to-right query is the primary one of each row
    extra_l2r: Tensor       # [e1] the other pairs (left entity linked more than once)
    prim_r2l_pair: Tensor   # [nR] pair whose right-to-left query is the primary one of each column
    extra_r2l: Tensor       # [e2] the other pairs (right entity linked more than once)


def _first_occurrence(keys: Tensor, n_keys: int) -> Tensor:
    """Index of the first position of each key ``0..n_keys-1`` in ``keys``."""
    pos = torch.arange(keys.numel(), device=keys.device)
    first = torch.full((n_keys,), keys.numel(), dtype=torch.long, device=keys.device)
    return first.scatter_reduce_(0, keys, pos, reduce="amin")


def _layout(pairs: Tensor) -> _Layout:
    n = pairs.shape[0]
    left_ids, row = torch.unique(pairs[:, 0], return_inverse=True)
    # Right-to-left queries in order of their gold row (stable), columns in order of first appearance there.
    order = torch.sort(row, stable=True).indices
    uniq_r, inv_sorted = torch.unique(pairs[order, 1], return_inverse=True)
    first = _first_occurrence(inv_sorted, uniq_r.numel())
    col_perm = torch.sort(first).indices                   # column c holds distinct right id uniq_r[col_perm[c]]
    col_of_uniq = torch.empty_like(col_perm)
    col_of_uniq[col_perm] = torch.arange(col_perm.numel(), device=pairs.device)
    col = torch.empty(n, dtype=torch.long, device=pairs.device)
    col[order] = col_of_uniq[inv_sorted]
    prim_r2l_pair = order[first[col_perm]]
    prim_l2r_pair = _first_occurrence(row, left_ids.numel())
    is_prim_l2r = torch.zeros(n, dtype=torch.bool, device=pairs.device)
    is_prim_l2r[prim_l2r_pair] = True
    is_prim_r2l = torch.zeros(n, dtype=torch.bool, device=pairs.device)
    is_prim_r2l[prim_r2l_pair] = True
    return _Layout(
        left_ids=left_ids, right_ids=uniq_r[col_perm], row=row, col=col,
        prim_l2r_pair=prim_l2r_pair, extra_l2r=torch.nonzero(~is_prim_l2r).flatten(),
        prim_r2l_pair=prim_r2l_pair, extra_r2l=torch.nonzero(~is_prim_r2l).flatten(),
    )


# ---------------------------------------------------------------------------------------------- counting
class _Counts:
    """Per pair of one direction: the sum of ``sign(score - gold)`` over its candidates (see :func:`sign_sums_`)."""

    def __init__(self, n: int, n_candidates: int, device: torch.device):
        self.n_candidates = n_candidates
        self.sign_sum = torch.zeros(n, dtype=torch.float64, device=device)

    def add(self, pair_idx: Tensor, sign_sum: Tensor) -> None:
        self.sign_sum.index_add_(0, pair_idx, sign_sum)

    def realistic_ranks(self) -> Tensor:
        """``1 + #greater + #equal_others / 2``, i.e. ``(m + 1 + sum sign) / 2`` for ``m`` candidates."""
        return (self.n_candidates + 1 + self.sign_sum) / 2


def _rank_counts(left: Tensor, right: Tensor, lay: _Layout, csls: bool, k: int,
                 chunk_size: int, keep_bytes: int = 0) -> tuple[Tensor, Tensor]:
    """Realistic ranks ``(l2r [n], r2l [n])`` of every pair: the two-pass chunked algorithm.

    With ``keep_bytes`` at least the size of the ``n_left x n_right`` matrix, pass 1 writes its products into one
    kept matrix and pass 2 reads them back instead of recomputing them (the same values, so the same ranks)."""
    n, n_left, n_right = lay.row.numel(), left.shape[0], right.shape[0]
    dev = left.device
    kept = (torch.empty(n_left, n_right, dtype=left.dtype, device=dev)
            if n_left * n_right * left.element_size() <= keep_bytes else None)
    l2r, r2l = _Counts(n, n_right, dev), _Counts(n, n_left, dev)
    prim_l2r_gold = lay.col[lay.prim_l2r_pair]                 # [nL] gold column of each row's primary query
    prim_r2l_row = lay.row[lay.prim_r2l_pair]                  # [nR] gold row of each column's primary query
    ex_r2l_row, ex_r2l_col = lay.row[lay.extra_r2l], lay.col[lay.extra_r2l]
    ex_l2r_row, ex_l2r_col = lay.row[lay.extra_l2r], lay.col[lay.extra_l2r]
    gold_r2l = torch.empty(n_right, dtype=left.dtype, device=dev)   # r2l gold score of each primary column
    gold_r2l_ex = torch.empty(ex_r2l_row.numel(), dtype=left.dtype, device=dev)
    neg_r_left = torch.zeros(n_left, dtype=left.dtype, device=dev)   # -r_L, filled chunk by chunk in pass 1
    cols = ColumnTopK(k)
    rows_max = min(chunk_size, n_left)
    sim_ws = _Workspace(rows_max * n_right if kept is None else 0, left)
    work_ws = _Workspace(rows_max * n_right, left)
    ones = torch.ones(max(n_left, n_right), dtype=left.dtype, device=dev)

    def to_r2l(cos: Tensor, s: int, e: int, out: Tensor) -> Tensor:
        """What a right-to-left query ranks: ``2 cos - r_L`` (CSLS; ``-r_L + 2 cos`` is the same float) or cos."""
        if not csls:
            return cos if out is cos else out.copy_(cos)
        return torch.add(neg_r_left[s:e, None], cos, alpha=2, out=out)

    def l2r_count_(score: Tensor, s: int, e: int) -> None:
        """Left-to-right counts for every query whose row lies in ``[s, e)``; ``score [e-s, nR]`` is consumed."""
        sel = ((ex_l2r_row >= s) & (ex_l2r_row < e)).nonzero().flatten()
        if sel.numel():
            sub = score.index_select(0, ex_l2r_row[sel] - s)
            l2r.add(lay.extra_l2r[sel], sign_sums_(sub, sub.gather(1, ex_l2r_col[sel, None]), dim=1, ones=ones))
        gold = score.gather(1, prim_l2r_gold[s:e, None])
        l2r.add(lay.prim_l2r_pair[s:e], sign_sums_(score, gold, dim=1, ones=ones))

    # Pass 1: radii, the right-to-left counts of columns whose gold row is in this chunk or an earlier one,
    # and (cosine only) the complete left-to-right ranks.
    done = 0
    for s, e in row_chunks(n_left, chunk_size):
        cos = matmul_t(left[s:e], right, out=sim_ws.view(e - s, n_right) if kept is None else kept[s:e])
        if csls:
            neg_r_left[s:e] = -topk_mean(cos, k)
            cols.update(cos)
        else:
            l2r_count_(work_ws.view(e - s, n_right).copy_(cos), s, e)
        known = int(torch.searchsorted(prim_r2l_row, e))      # columns [0, known) have their gold row < e
        # Only those columns are ranked in this pass (an extra query's column is its primary's, so an extra whose
        # gold row is < e lies there too): transform just them (in place, unless pass 2 reads the kept matrix).
        v = to_r2l(cos[:, :known], s, e,
                   out=cos[:, :known] if kept is None else work_ws.view(e - s, known))
        new = torch.arange(done, known, device=dev)
        gold_r2l[new] = v[prim_r2l_row[new] - s, new]
        done = known
        is_new_ex = (ex_r2l_row >= s) & (ex_r2l_row < e)
        gold_r2l_ex[is_new_ex] = v[ex_r2l_row[is_new_ex] - s, ex_r2l_col[is_new_ex]]
        seen = (ex_r2l_row < e).nonzero().flatten()
        if seen.numel():
            r2l.add(lay.extra_r2l[seen],
                    sign_sums_(v.index_select(1, ex_r2l_col[seen]), gold_r2l_ex[seen], dim=0, ones=ones))
        if known:
            r2l.add(lay.prim_r2l_pair[:known], sign_sums_(v, gold_r2l[:known], dim=0, ones=ones))
    neg_r_right = -cols.mean() if csls else None

    # Pass 2: the right-to-left counts of rows above each column's gold row, and (CSLS) the left-to-right ranks.
    for s, e in row_chunks(n_left, chunk_size):
        known = int(torch.searchsorted(prim_r2l_row, e))
        pending = (ex_r2l_row >= e).nonzero().flatten()
        if not csls and known == n_right and pending.numel() == 0:
            continue
        work = work_ws.view(e - s, n_right - known)
        if kept is not None:
            cos = kept[s:e]
            rest = to_r2l(cos[:, known:], s, e, out=work)
            ex = cos.index_select(1, ex_r2l_col[pending])
            ex = to_r2l(ex, s, e, out=ex)
        elif csls:
            cos = matmul_t(left[s:e], right, out=sim_ws.view(e - s, n_right))
            rest = to_r2l(cos[:, known:], s, e, out=work)
            ex = cos.index_select(1, ex_r2l_col[pending])
            ex = to_r2l(ex, s, e, out=ex)
        else:                                              # cosine: only the columns still missing rows
            rest = matmul_t(left[s:e], right[known:], out=work)
            ex = matmul_t(left[s:e], right[ex_r2l_col[pending]])
        if known < n_right:
            r2l.add(lay.prim_r2l_pair[known:], sign_sums_(rest, gold_r2l[known:], dim=0, ones=ones))
        if pending.numel():
            r2l.add(lay.extra_r2l[pending], sign_sums_(ex, gold_r2l_ex[pending], dim=0, ones=ones))
        if csls:
            l2r_count_(torch.add(neg_r_right, cos, alpha=2, out=cos), s, e)   # 2 cos - r_R
    return l2r.realistic_ranks(), r2l.realistic_ranks()


# ---------------------------------------------------------------------------------------------- metrics
def metrics_from_ranks(ranks: Tensor, hits: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """``{"hits@k": fraction with rank <= k, "mrr": mean 1/rank, "mr": mean rank}`` of float ranks."""
    r = ranks.double()
    out = {f"hits@{k}": float((r <= k).double().mean()) for k in hits}
    out["mrr"] = float((1.0 / r).mean())
    out["mr"] = float(r.mean())
    return out


@torch.no_grad()
def evaluate(
    emb: Tensor,
    pairs: Tensor,
    *,
    similarity: str = "csls",
    csls_k: int = 3,
    chunk_size: int = 4096,
    hits: tuple[int, ...] = (1, 5, 10),
    return_ranks: bool = False,
    keep_bytes: int | None = None,
) -> dict:
    """Rank every test pair in both directions and return the alignment metrics.

    Args:
        emb: ``[N, d]`` embedding of all entities (any device; computation stays on ``emb.device``).
        pairs: ``[n, 2]`` test links (KG1 id, KG2 id), global ids into ``emb``.
        similarity: ``"cosine"`` or ``"csls"``.
        csls_k: neighbourhood size of CSLS (clipped to the number of candidates).
        chunk_size: left rows per chunk; peak memory is two reused ``chunk_size x n`` score buffers.
        hits: the k of the Hits@k metrics.
        return_ranks: also return the float ranks per pair (``ranks_l2r``, ``ranks_r2l``, on CPU, pairs order).
        keep_bytes: keep the whole similarity matrix between the two passes when it is at most this many bytes
            (default :data:`KEEP_BYTES`; 0 never): one matrix product instead of two, the same ranks.

    Returns:
        ``{"l2r": m, "r2l": m, "mean": m, "n": n}`` with ``m = {"hits@k"..., "mrr", "mr"}`` (hits as
        fractions); ``mean`` averages the two directions. Papers report ``l2r``.
    """
    if not isinstance(emb, Tensor) or emb.dim() != 2:
        raise ValueError(f"emb must be a 2-D float tensor [N, d], got {getattr(emb, 'shape', type(emb))}")
    check_similarity(similarity, csls_k, chunk_size)
    if not isinstance(pairs, Tensor) or pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must be a [n, 2] tensor, got {getattr(pairs, 'shape', type(pairs))}")
    check_ids(pairs, emb.shape[0], "pairs")
    if not hits or any(int(k) < 1 for k in hits):
        raise ValueError(f"hits must be positive integers, got {hits}")
    lay = _layout(pairs.to(device=emb.device, dtype=torch.long))
    left, right = emb[lay.left_ids], emb[lay.right_ids]
    check_embedding(left)
    check_embedding(right)
    ranks_l2r, ranks_r2l = _rank_counts(normalise(left), normalise(right), lay, similarity == "csls",
                                        int(csls_k), int(chunk_size),
                                        KEEP_BYTES if keep_bytes is None else int(keep_bytes))
    m_l2r, m_r2l = metrics_from_ranks(ranks_l2r, hits), metrics_from_ranks(ranks_r2l, hits)
    out: dict = {
        "l2r": m_l2r,
        "r2l": m_r2l,
        "mean": {key: (m_l2r[key] + m_r2l[key]) / 2 for key in m_l2r},
        "n": int(pairs.shape[0]),
    }
    if return_ranks:
        out["ranks_l2r"], out["ranks_r2l"] = ranks_l2r.cpu(), ranks_r2l.cpu()
    return out
