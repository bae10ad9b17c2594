"""Losses: InfoNCE/ICL against a loop, IAL stop-gradient, NCA, margin loss, uncertainty weighting."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mimea.nn.losses import (UncertaintyWeighting, ial_loss, info_nce, margin_loss, nca_loss,
                             sample_negatives)


def _loop_info_nce(a, b, tau, intra):
    """Direct per-pair computation of MCLEA's ICL (both directions averaged)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    out = []
    for i in range(a.size(0)):
        per_dir = []
        for x, y in ((a, b), (b, a)):
            logits = [float(x[i] @ y[j]) / tau for j in range(a.size(0))]
            if intra:
                logits += [float(x[i] @ x[j]) / tau for j in range(a.size(0)) if j != i]
            log_z = math.log(sum(math.exp(v) for v in logits))
            per_dir.append(log_z - logits[i])
        out.append(0.5 * sum(per_dir))
    return torch.tensor(out, dtype=torch.double)


@pytest.mark.parametrize("intra", [True, False])
def test_info_nce_equals_loop(intra):
    torch.manual_seed(0)
    a, b = torch.randn(5, 4, dtype=torch.double), torch.randn(5, 4, dtype=torch.double)
    ref = _loop_info_nce(a, b, 0.1, intra)
    per_pair = info_nce(a, b, 0.1, intra_negatives=intra, reduction="none")
    assert per_pair.shape == (5,)
    assert torch.allclose(per_pair, ref, atol=1e-9)
    assert info_nce(a, b, 0.1, intra_negatives=intra) == pytest.approx(float(ref.mean()), abs=1e-9)
    assert info_nce(a, b, 0.1, intra_negatives=intra, reduction="sum") == pytest.approx(float(ref.sum()), abs=1e-9)


def test_info_nce_prefers_aligned_rows():
    torch.manual_seed(1)
    a = torch.randn(8, 16)
    assert info_nce(a, a + 0.01 * torch.randn(8, 16)) < info_nce(a, torch.randn(8, 16))


def test_info_nce_rejects_bad_input():
    with pytest.raises(ValueError, match="equal shape"):
        info_nce(torch.randn(3, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="unknown reduction"):
        info_nce(torch.randn(3, 4), torch.randn(3, 4), reduction="max")


def test_ial_gradient_does_not_reach_joint():
    torch.manual_seed(2)
    uni_a, uni_b = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    joint_a, joint_b = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    loss = ial_loss(uni_a, uni_b, joint_a, joint_b, tau2=4.0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert joint_a.grad is None and joint_b.grad is None
    assert uni_a.grad is not None and uni_a.grad.abs().sum() > 0


def test_ial_is_zero_when_distributions_match_and_matches_kl():
    torch.manual_seed(3)
    a, b = torch.randn(5, 4, dtype=torch.double), torch.randn(5, 4, dtype=torch.double)
    assert ial_loss(a, b, a, b) == pytest.approx(0.0, abs=1e-12)
    ja, jb = torch.randn(5, 6, dtype=torch.double), torch.randn(5, 6, dtype=torch.double)
    # Explicit MCLEA form (no intra negatives for brevity): zoom * mean over both directions of the
    # elementwise-mean KL(q || p).
    na, nb, nja, njb = (F.normalize(t, dim=1) for t in (a, b, ja, jb))
    p_ab, q_ab = (na @ nb.t()) / 4.0, (nja @ njb.t()) / 4.0
    kl_a = (q_ab.softmax(1) * (q_ab.log_softmax(1) - p_ab.log_softmax(1))).mean()
    kl_b = (q_ab.t().softmax(1) * (q_ab.t().log_softmax(1) - p_ab.t().log_softmax(1))).mean()
    expect = 0.1 * 0.5 * (kl_a + kl_b)
    assert ial_loss(a, b, ja, jb, intra_negatives=False) == pytest.approx(float(expect), rel=1e-9)


def test_nca_finite_and_prefers_aligned():
    torch.manual_seed(4)
    a = torch.randn(10, 8)
    aligned = nca_loss(a, a + 0.01 * torch.randn(10, 8), alpha=15.0)
    random = nca_loss(a, torch.randn(10, 8), alpha=15.0)
    assert torch.isfinite(aligned) and torch.isfinite(random)
    assert aligned < random
    big = nca_loss(a, a, alpha=500.0)  # logsumexp form: no overflow at large alpha
    assert torch.isfinite(big)


def test_nca_matches_eva_formula():
    torch.manual_seed(5)
    a, b = torch.randn(4, 3, dtype=torch.double), torch.randn(4, 3, dtype=torch.double)
    alpha, beta, ep = 5.0, 10.0, 0.5
    s = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()
    e = torch.exp(alpha * (s - ep)) * (1 - torch.eye(4, dtype=torch.double))
    ref = (torch.log(1 + e.sum(0)) / alpha + torch.log(1 + e.sum(1)) / alpha
           - beta * torch.log(1 + torch.relu(s.diagonal()))).sum() / 4
    assert nca_loss(a, b, alpha, beta, ep) == pytest.approx(float(ref), rel=1e-9)


def test_margin_loss_by_hand():
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    links = torch.tensor([[0, 1]])                        # L1 distance 1
    neg = torch.tensor([[[0, 2], [0, 3]]])               # L1 distances 3 and 10
    # relu(3 + 1 - 3) = 1, relu(3 + 1 - 10) = 0 -> mean 0.5
    assert margin_loss(emb, links, neg, gamma=3.0, p=1) == pytest.approx(0.5)
    # L2: pos 1, negs 3 and sqrt(50): relu(1) + 0 -> 0.5 as well; with gamma 8: (6 + 8 + 1 - sqrt 50) / 2
    assert margin_loss(emb, links, neg, gamma=8.0, p=2) == pytest.approx((6 + 9 - math.sqrt(50)) / 2)
    with pytest.raises(ValueError, match="neg_links must be"):
        margin_loss(emb, links, neg[0])


def test_sample_negatives_layout_and_determinism():
    links = torch.tensor([[0, 10], [1, 11], [2, 12]])
    left, right = torch.arange(0, 5), torch.arange(10, 15)
    neg = sample_negatives(links, left, right, 4, torch.Generator().manual_seed(0))
    assert neg.shape == (3, 8, 2)
    assert (neg[:, :4, 0] == links[:, :1]).all() and torch.isin(neg[:, :4, 1], right).all()
    assert (neg[:, 4:, 1] == links[:, 1:]).all() and torch.isin(neg[:, 4:, 0], left).all()
    again = sample_negatives(links, left, right, 4, torch.Generator().manual_seed(0))
    assert torch.equal(neg, again)


def test_uncertainty_weighting_value_and_params():
    uw = UncertaintyWeighting(3)
    params = list(uw.parameters())
    assert len(params) == 1 and params[0].requires_grad and params[0].shape == (3,)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.0, 1.0, -0.5]))
    losses = [torch.tensor(2.0), torch.tensor(3.0), torch.tensor(0.5)]
    expect = sum(math.exp(-s) * x + s for s, x in zip([0.0, 1.0, -0.5], [2.0, 3.0, 0.5]))
    value = uw(losses)
    assert float(value.detach()) == pytest.approx(expect, rel=1e-6)
    value.backward()
    assert uw.log_vars.grad is not None and uw.log_vars.grad.abs().sum() > 0
    assert torch.allclose(uw.weights(), torch.exp(-torch.tensor([0.0, 1.0, -0.5])))
    with pytest.raises(ValueError, match="expected 3 losses"):
        uw(losses[:2])


def _concat_reference(a, b, tau, tau2=None, joint=None):
    """The authors' formulation: ``[ab | aa]`` logits concatenated (diagonal masked), cross-entropy / KL."""
    import torch.nn.functional as F

    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    t = tau if tau2 is None else tau2
    eye = torch.eye(len(a), dtype=torch.bool)
    low = torch.finfo(a.dtype).min
    la = torch.cat([a @ b.t() / t, (a @ a.t() / t).masked_fill(eye, low)], dim=1)
    lb = torch.cat([b @ a.t() / t, (b @ b.t() / t).masked_fill(eye, low)], dim=1)
    if joint is None:
        y = torch.arange(len(a))
        return 0.5 * (F.cross_entropy(la, y) + F.cross_entropy(lb, y))
    ja, jb = (F.normalize(x, dim=1).detach() for x in joint)
    qa = torch.cat([ja @ jb.t() / t, (ja @ ja.t() / t).masked_fill(eye, low)], dim=1)
    qb = torch.cat([jb @ ja.t() / t, (jb @ jb.t() / t).masked_fill(eye, low)], dim=1)
    kl = lambda p, q: F.kl_div(F.log_softmax(p, 1), F.softmax(q, 1), reduction="none").mean()  # noqa: E731
    return 0.5 * (kl(la, qa) + kl(lb, qb))


def test_blockwise_icl_and_ial_equal_the_concatenated_formulation():
    """The block-wise losses (no [B, 2B] concatenation) equal the authors' concatenated logits, values and grads."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(37, 16, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(37, 16, generator=g, dtype=torch.float64, requires_grad=True)
    ja, jb = torch.randn(37, 24, generator=g, dtype=torch.float64), torch.randn(37, 24, generator=g,
                                                                             dtype=torch.float64)
    for ours, ref in ((info_nce(a, b, tau=0.1), _concat_reference(a, b, 0.1)),
                      (ial_loss(a, b, ja, jb, tau2=4.0, zoom=1.0), _concat_reference(a, b, 0.1, 4.0, (ja, jb)))):
        assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-12)
        g1 = torch.autograd.grad(ours, (a, b))
        g2 = torch.autograd.grad(ref, (a, b))
        for x, y in zip(g1, g2):
            assert torch.allclose(x, y, rtol=1e-8, atol=1e-12)


def _autograd_info_nce(a, b, tau, intra):
    """info_nce's per-pair loss through plain autograd (the formulation its hand-written backward replaces)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    ab = (a / tau) @ b.t()
    lse_a, lse_b = torch.logsumexp(ab, dim=1), torch.logsumexp(ab, dim=0)
    if intra:
        eye = torch.eye(a.size(0), dtype=torch.bool)
        aa = ((a / tau) @ a.t()).masked_fill(eye, torch.finfo(a.dtype).min)
        bb = ((b / tau) @ b.t()).masked_fill(eye, torch.finfo(a.dtype).min)
        lse_a = torch.logaddexp(lse_a, torch.logsumexp(aa, dim=1))
        lse_b = torch.logaddexp(lse_b, torch.logsumexp(bb, dim=1))
    return 0.5 * ((lse_a - ab.diagonal()) + (lse_b - ab.diagonal()))


@pytest.mark.parametrize("intra", [True, False])
@pytest.mark.parametrize("upstream", ["mean", "sum", "positive", "signed"])
def test_info_nce_backward_equals_autograd(intra, upstream):
    """The hand-written backward gives autograd's gradients (float64), for any upstream gradient."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(29, 12, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(29, 12, generator=g, dtype=torch.float64, requires_grad=True)
    weights = {"positive": torch.rand(29, generator=g, dtype=torch.float64) + 0.1,
               "signed": torch.randn(29, generator=g, dtype=torch.float64)}.get(upstream)
    reduction = upstream if upstream in ("mean", "sum") else "none"
    ours = info_nce(a, b, 0.07, intra_negatives=intra, reduction=reduction)
    ref = _autograd_info_nce(a, b, 0.07, intra)
    ref = {"mean": ref.mean(), "sum": ref.sum()}.get(reduction, ref)
    if weights is not None:
        ours, ref = (ours * weights).sum(), (ref * weights).sum()
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    for x, y in zip(torch.autograd.grad(ours, (a, b)), torch.autograd.grad(ref, (a, b))):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12)


def test_info_nce_gradcheck_and_retain_graph():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: info_nce(x, y, 0.2, reduction="none"), (a, b))
    loss = info_nce(a, b, 0.2)
    first = torch.autograd.grad(loss, (a, b), retain_graph=True)
    again = torch.autograd.grad(loss, (a, b))                   # the saved logits were not consumed
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_info_nce_float32_gradients_match_autograd_closely():
    """In float32 the two backward formulations differ only by rounding."""
    g = torch.Generator().manual_seed(4)
    a = torch.randn(300, 64, generator=g, requires_grad=True)
    b = (a.detach() + 0.5 * torch.randn(300, 64, generator=g)).requires_grad_()
    ours = torch.autograd.grad(info_nce(a, b, 0.1), (a, b))
    ref = torch.autograd.grad(_autograd_info_nce(a, b, 0.1, True).mean(), (a, b))
    for x, y in zip(ours, ref):
        assert (x - y).abs().max() <= 1e-5 * y.abs().max()
