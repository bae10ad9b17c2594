"""Alignment losses of the lineage, on already computed embeddings (device-agnostic).

Row ``i`` of ``a`` (a KG1 entity) is aligned with row ``i`` of ``b`` (its KG2 counterpart) everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"expected two [B, d] tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _self_logits(x: Tensor, tau: float) -> Tensor:
    """``x x^T / tau`` with the diagonal at the dtype's lowest value (finite): same-KG negatives, self excluded.

    The temperature is applied to the ``[B, d]`` rows, not the ``[B, B]`` product, and the diagonal is set in
    place (the product's backward needs its inputs, not its output), so no ``[B, B]`` copy is made.
    """
    out = (x / tau) @ x.t()
    out.diagonal().fill_(torch.finfo(out.dtype).min)
    return out


def _row_log_softmax_blocks(ab: Tensor, aa: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Row-wise log-softmax over the columns of ``[ab | aa]`` without building the ``[B, 2B]`` concatenation."""
    lse = torch.logsumexp(ab, dim=1, keepdim=True)
    if aa is None:
        return ab - lse, None
    lse = torch.logaddexp(lse, torch.logsumexp(aa, dim=1, keepdim=True))
    return ab - lse, aa - lse


def _contrast_blocks(a: Tensor, b: Tensor, tau: float, intra_negatives: bool):
    """MCLEA's logits as blocks: ``ab = a b^T / tau`` and the masked same-KG ``aa``, ``bb`` (None without
    ``intra_negatives``). Direction a->b reads ``[ab | aa]`` by rows, b->a reads ``[ab^T | bb]``."""
    ab = (a / tau) @ b.t()
    if not intra_negatives:
        return ab, None, None
    return ab, _self_logits(a, tau), _self_logits(b, tau)


def _lse_pairs(ab: Tensor, aa: Tensor | None, bb: Tensor | None) -> tuple[Tensor, Tensor]:
    """Each pair's log-normaliser of direction a->b (rows of ``[ab | aa]``) and b->a (rows of ``[ab^T | bb]``)."""
    lse_a = torch.logsumexp(ab, dim=1)
    lse_b = torch.logsumexp(ab, dim=0)
    if aa is not None:
        lse_a = torch.logaddexp(lse_a, torch.logsumexp(aa, dim=1))
        lse_b = torch.logaddexp(lse_b, torch.logsumexp(bb, dim=1))
    return lse_a, lse_b


def _softmax_times(logits: Tensor, lse: Tensor, scale: Tensor, dim: int, out: Tensor) -> Tensor:
    """``scale * exp(logits - lse)`` into ``out``, ``lse`` and ``scale`` broadcast along ``dim`` (1: per row, 0: per
    column). A positive ``scale`` is folded into the exponent (``exp(logits - (lse - log scale))``): two passes over
    the block instead of three."""
    shape = (-1, 1) if dim == 1 else (1, -1)
    if bool((scale > 0).all()):
        return torch.sub(logits, (lse - scale.log()).view(shape), out=out).exp_()
    return torch.sub(logits, lse.view(shape), out=out).exp_().mul_(scale.view(shape))


class _InfoNCEPerPair(torch.autograd.Function):
    """Per-pair ICL ``[B]`` of (already normalised) ``a``, ``b`` with a hand-written backward.

    Forward: the same operations as autograd's formulation, hence the same values. Backward, for upstream ``g``:
    ``dL/d ab_ij = g_i/2 softmax_a(i, j) + g_j/2 softmax_b(j, i) - g_i [i = j]``, ``dL/d aa_ij = g_i/2 softmax_a``,
    ``dL/d bb_ij = g_i/2 softmax_b``; then ``da = (G_ab b + (G_aa + G_aa^T) a) / tau``,
    ``db = (G_ab^T a + (G_bb + G_bb^T) b) / tau`` (``G_aa^T`` read as ``aa``'s column softmax, ``aa`` being symmetric
    up to rounding): four ``[B, B] x [B, d]`` products where autograd's backward of the
    three forward products takes six, and two ``[B, B]`` buffers for all the gradient blocks. The saved logits are
    read, never written, so ``retain_graph`` works; double backward is not supported.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, tau: float, intra_negatives: bool) -> Tensor:
        ab, aa, bb = _contrast_blocks(a, b, tau, intra_negatives)
        lse_a, lse_b = _lse_pairs(ab, aa, bb)
        per_pair = 0.5 * ((lse_a - ab.diagonal()) + (lse_b - ab.diagonal()))
        ctx.save_for_backward(a, b, ab, lse_a, lse_b, *(() if aa is None else (aa, bb)))
        ctx.tau = tau
        return per_pair

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        a, b, ab, lse_a, lse_b, *intra = ctx.saved_tensors
        half = 0.5 * g
        g_ab = _softmax_times(ab, lse_a, half, dim=1, out=torch.empty_like(ab))
        tmp = _softmax_times(ab, lse_b, half, dim=0, out=torch.empty_like(ab))
        g_ab.add_(tmp)
        g_ab.diagonal().sub_(g)
        da = g_ab @ b
        db = g_ab.t() @ a
        if intra:
            aa, bb = intra
            for logits, lse, x, grad in ((aa, lse_a, a, da), (bb, lse_b, b, db)):
                # G + G^T, read along rows and along columns of the same logits (aa = (a / tau) a^T is symmetric up
                # to the rounding of its two products): contiguous passes instead of a transposed read.
                sym = _softmax_times(logits, lse, half, dim=1, out=tmp)
                sym.add_(_softmax_times(logits, lse, half, dim=0, out=g_ab))
                grad.addmm_(sym, x)
        return da.div_(ctx.tau), db.div_(ctx.tau), None, None


def info_nce(a: Tensor, b: Tensor, tau: float = 0.1, *, normalize: bool = True,
             intra_negatives: bool = True, reduction: str = "mean") -> Tensor:
    """MCLEA's intra-modal contrastive loss (ICL), bidirectional, with in-batch negatives.

    For direction a->b the target of row ``i`` is ``b_i`` among all rows of ``b`` and, when
    ``intra_negatives``, the other rows of ``a`` (same-KG negatives; ``a_i`` itself masked); b->a is
    symmetric. The loss is the mean of both directions (the authors' ``ab_weight=0.5``).
    ``reduction``: ``"mean"`` (scalar) | ``"sum"`` | ``"none"`` (per-pair ``[B]``).

    Computed as ``logsumexp`` over the blocks (``-ab_ii + log(sum_j e^ab_ij + sum_j e^aa_ij)``), equal to the
    cross-entropy over the authors' concatenated ``[ab | aa]`` logits without materialising them.
    """
    _check_pair(a, b)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; known: mean, sum, none")
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        per_pair = _InfoNCEPerPair.apply(a, b, float(tau), bool(intra_negatives))
    else:
        ab, aa, bb = _contrast_blocks(a, b, tau, intra_negatives)
        lse_a, lse_b = _lse_pairs(ab, aa, bb)
        per_pair = 0.5 * ((lse_a - ab.diagonal()) + (lse_b - ab.diagonal()))
    if reduction == "none":
        return per_pair
    return per_pair.sum() if reduction == "sum" else per_pair.mean()


def _kl_blocks(p: tuple[Tensor, Tensor | None], q: tuple[Tensor, Tensor | None]) -> Tensor:
    """``F.kl_div(log p, q, reduction="none").mean()`` over the blocks of a ``[B, 2B]`` row distribution."""
    total, count = 0.0, 0
    for lp, lq in zip(p, q):
        if lp is None:
            continue
        total = total + torch.xlogy(lq.exp(), lq.exp()).sum() - (lq.exp() * lp).sum()
        count += lp.numel()
    return total / count


def ial_loss(uni_a: Tensor, uni_b: Tensor, joint_a: Tensor, joint_b: Tensor, tau2: float = 4.0, *,
             zoom: float = 0.1, intra_negatives: bool = True, normalize: bool = True) -> Tensor:
    """MCLEA's inter-modal alignment loss (IAL): unimodal in-batch distributions toward the joint one.

    Both similarity distributions are built as in :func:`info_nce` (temperature ``tau2``); the loss is
    ``KL(softmax(joint) || softmax(uni))`` with the joint side DETACHED, so no gradient reaches the
    joint embedding. As in the authors' code, the KL is averaged over all ``B x 2B`` entries
    (``reduction="mean"`` of ``F.kl_div``), the two directions are averaged, and the result is
    multiplied by ``zoom`` (0.1). Computed block-wise (no ``[B, 2B]`` concatenation).
    """
    _check_pair(uni_a, uni_b)
    _check_pair(joint_a, joint_b)
    if normalize:
        uni_a, uni_b = F.normalize(uni_a, dim=1), F.normalize(uni_b, dim=1)
        joint_a, joint_b = F.normalize(joint_a, dim=1), F.normalize(joint_b, dim=1)
    ab, aa, bb = _contrast_blocks(uni_a, uni_b, tau2, intra_negatives)
    with torch.no_grad():
        qab, qaa, qbb = _contrast_blocks(joint_a.detach(), joint_b.detach(), tau2, intra_negatives)
        q_a = _row_log_softmax_blocks(qab, qaa)
        q_b = _row_log_softmax_blocks(qab.t(), qbb)
    kl_a = _kl_blocks(_row_log_softmax_blocks(ab, aa), q_a)
    kl_b = _kl_blocks(_row_log_softmax_blocks(ab.t(), bb), q_b)
    return zoom * 0.5 * (kl_a + kl_b)


def nca_loss(a: Tensor, b: Tensor, alpha: float = 15.0, beta: float = 10.0, ep: float = 0.5) -> Tensor:
    """EVA's NCA-style loss on cosine similarities ``S = norm(a) norm(b)^T``.

    ``mean_i [ log(1 + sum_{j!=i} exp(alpha (S_ji - ep))) / alpha + log(1 + sum_{j!=i} exp(alpha (S_ij - ep))) / alpha
    - beta log(1 + relu(S_ii)) ]``, computed with ``logsumexp`` (stable for any ``alpha``).
    EVA uses alpha 5 for the GCN view and 15 otherwise, beta 10, ep 0.5.
    """
    _check_pair(a, b)
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    scores = a @ b.t()
    z = alpha * (scores - ep)
    eye = torch.eye(z.size(0), dtype=torch.bool, device=z.device)
    z = z.masked_fill(eye, float("-inf"))
    zero = z.new_zeros(z.size(0), 1)
    log_rows = torch.logsumexp(torch.cat([zero, z], dim=1), dim=1)          # log(1 + S_.sum(1))
    log_cols = torch.logsumexp(torch.cat([zero, z.t()], dim=1), dim=1)      # log(1 + S_.sum(0))
    pos = torch.log1p(F.relu(scores.diagonal()))
    return (log_cols / alpha + log_rows / alpha - beta * pos).mean()


def margin_loss(emb: Tensor, links: Tensor, neg_links: Tensor, gamma: float = 3.0, p: int = 1) -> Tensor:
    """GCN-Align's margin ranking loss with the ``p``-norm distance (p=1: Manhattan).

    ``links``: ``[B, 2]`` aligned pairs; ``neg_links``: ``[B, K, 2]`` corrupted pairs for each link.
    ``mean over (b, k) of relu(gamma + d(links_b) - d(neg_links_bk))`` (the authors divide the sum
    by ``2 k t``, i.e. the mean over their ``2k`` negatives per link).
    """
    if links.dim() != 2 or links.size(1) != 2:
        raise ValueError(f"links must be [B, 2], got {tuple(links.shape)}")
    if neg_links.dim() != 3 or neg_links.size(0) != links.size(0) or neg_links.size(2) != 2:
        raise ValueError(f"neg_links must be [B, K, 2] with B={links.size(0)}, got {tuple(neg_links.shape)}")
    pos = torch.linalg.vector_norm(emb[links[:, 0]] - emb[links[:, 1]], ord=p, dim=-1)        # [B]
    neg = torch.linalg.vector_norm(emb[neg_links[..., 0]] - emb[neg_links[..., 1]], ord=p, dim=-1)  # [B, K]
    return F.relu(gamma + pos.unsqueeze(1) - neg).mean()


def sample_negatives(links: Tensor, candidates_left: Tensor, candidates_right: Tensor, k: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """GCN-Align's uniform negatives: ``[B, 2k, 2]``, the first ``k`` replace the right entity of each
    link by a uniform draw from ``candidates_right``, the last ``k`` replace the left one by a draw from
    ``candidates_left`` (with replacement). Drawn on the generator's device, returned on ``links``'.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if candidates_left.numel() == 0 or candidates_right.numel() == 0:
        raise ValueError("negative candidates must be non-empty")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    b = links.size(0)
    i_right = torch.randint(candidates_right.numel(), (b, k), generator=generator, device=gen_device)
    i_left = torch.randint(candidates_left.numel(), (b, k), generator=generator, device=gen_device)
    right = candidates_right.to(links.device)[i_right.to(links.device)]
    left = candidates_left.to(links.device)[i_left.to(links.device)]
    keep_l = links[:, :1].expand(b, k)
    keep_r = links[:, 1:].expand(b, k)
    corrupt_right = torch.stack([keep_l, right], dim=-1)
    corrupt_left = torch.stack([left, keep_r], dim=-1)
    return torch.cat([corrupt_right, corrupt_left], dim=1)


class UncertaintyWeighting(nn.Module):
    """Kendall-style learned loss weights, exactly MCLEA's ``CustomMultiLossLayer``.

    ``sum_i exp(-s_i) * L_i + s_i`` with learnable ``s_i`` (initialised to 0). This is Kendall et
    al.'s ``L / (2 sigma^2) + log sigma`` with ``s = log sigma^2`` up to a factor 2 the authors drop.
    """

    def __init__(self, n_terms: int):
        super().__init__()
        if n_terms < 1:
            raise ValueError(f"n_terms must be >= 1, got {n_terms}")
        self.log_vars = nn.Parameter(torch.zeros(n_terms))

    def forward(self, losses: list[Tensor]) -> Tensor:
        if len(losses) != self.log_vars.numel():
            raise ValueError(f"expected {self.log_vars.numel()} losses, got {len(losses)}")
        stacked = torch.stack([torch.as_tensor(x, device=self.log_vars.device).reshape(()) for x in losses])
        return (torch.exp(-self.log_vars) * stacked + self.log_vars).sum()

    def weights(self) -> Tensor:
        """Current per-term weights ``exp(-s_i)`` (detached), for logging."""
        return torch.exp(-self.log_vars.detach())
