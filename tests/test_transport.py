"""Entropic OT alignment (mimea.nn.transport): marginals, small-eps safety, gradients, blocks, identity plan."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mimea.nn.transport import cosine_cost, reduce_cost, sinkhorn_plan, transport_loss


def _pair(n: int = 64, d: int = 16, noise: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    y = F.normalize(x + noise * torch.randn(n, d, generator=g), dim=-1)
    return x, y


def _no_zero_matching(k: int = 8) -> torch.Tensor:
    """A cost whose zeros cannot carry a uniform plan: the optimum needs cost-1 entries (Knopp breaks at small eps)."""
    c = torch.zeros(3 * k, 3 * k)
    c[k:, k:] = 1.0
    return c


@pytest.mark.parametrize("eps", [0.5, 0.1, 0.05])
@pytest.mark.parametrize("method", ["auto", "sinkhorn", "log"])
def test_plan_marginals_are_uniform(eps, method):
    x, y = _pair()
    n = x.size(0)
    plan, info = sinkhorn_plan(cosine_cost(x, y), eps, n_iter=300, tol=1e-9, method=method)
    assert plan.shape == (n, n) and torch.all(plan >= 0)
    assert (plan.sum(1) - 1 / n).abs().max() < 1e-3 / n      # within 0.1 % of uniform, rows ...
    assert (plan.sum(0) - 1 / n).abs().max() < 1e-3 / n      # ... and columns
    assert info.marginal_error < 1e-3 and not info.fell_back


def test_cost_reduction_leaves_the_plan_unchanged():
    x, y = _pair(seed=1)
    cost = cosine_cost(x, y)
    reduced = reduce_cost(cost)
    assert torch.all(reduced >= 0)
    assert torch.all(reduced.min(1).values == 0) and torch.all(reduced.min(0).values == 0)
    import ot
    p1 = ot.sinkhorn(torch.full((64,), 1 / 64), torch.full((64,), 1 / 64), cost, 0.1, numItermax=500, stopThr=1e-9)
    p2, _ = sinkhorn_plan(cost, 0.1, n_iter=500, tol=1e-9)
    torch.testing.assert_close(p1, p2, atol=1e-6, rtol=1e-3)


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
def test_small_eps_is_finite_with_finite_gradient(grad):
    x, y = _pair(n=48)
    x = x.clone().requires_grad_(True)
    loss, info = transport_loss(x, y, 1e-3, n_iter=200, grad=grad)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    assert info["fallbacks"] == 1                       # POT's Knopp breaks here even on the reduced cost ...
    assert info["marginal_error"] < 0.05                # ... and the log-domain rerun is close to uniform


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
def test_small_eps_log_domain_gradient_is_finite(grad):
    cost = _no_zero_matching(4).requires_grad_(True)
    plan, info = sinkhorn_plan(cost, 1e-3, n_iter=100, method="log", grad=grad)
    (plan * cost).sum().backward()
    assert torch.isfinite(cost.grad).all() and info.marginal_error < 1e-3


def test_small_eps_falls_back_to_the_log_domain_when_knopp_breaks():
    cost = _no_zero_matching()
    import ot
    n = cost.size(0)
    a = torch.full((n,), 1 / n)
    broken = ot.sinkhorn(a, a, cost, 1e-3, numItermax=500, warn=False)      # POT's Knopp alone: wrong, no NaN
    assert (broken.sum(1) * n - 1).abs().max() > 0.5
    plan, info = sinkhorn_plan(cost, 1e-3, n_iter=100)
    assert info.fell_back and info.method == "log"
    assert torch.isfinite(plan).all() and info.marginal_error < 1e-3
    assert abs(float((plan * cost).sum()) - 1 / 3) < 1e-3    # the exact optimum is 1/3
    with pytest.raises(ValueError, match="eps"):
        sinkhorn_plan(cost, 0.0)


def test_gradient_modes_agree_on_the_value_and_envelope_gradient_is_the_plan():
    x, y = _pair(n=32, seed=2)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    l1, _ = transport_loss(x1, y, 0.1, n_iter=500, tol=1e-9, grad="envelope")
    l2, _ = transport_loss(x2, y, 0.1, n_iter=500, tol=1e-9, grad="unroll")
    torch.testing.assert_close(l1, l2)
    cost = cosine_cost(x, y).requires_grad_(True)
    plan, _ = sinkhorn_plan(cost, 0.1, n_iter=500, tol=1e-9)
    assert not plan.requires_grad
    (plan * cost).sum().backward()
    torch.testing.assert_close(cost.grad, plan)


def test_target_is_detached():
    x, y = _pair(n=16)
    y = y.clone().requires_grad_(True)
    x = x.clone().requires_grad_(True)
    loss, _ = transport_loss(x, y, 0.1)
    loss.backward()
    assert y.grad is None and x.grad is not None


def test_ot_recovers_a_permutation():
    x, _ = _pair(n=40, d=32)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    plan, _ = sinkhorn_plan(cosine_cost(x, x[perm]), 0.01, n_iter=1000)
    # row i of x is column k of x[perm] where perm[k] == i
    assert torch.equal(plan.argmax(1), torch.argsort(perm))
    loss, _ = transport_loss(x, x, 0.01, n_iter=1000)
    rnd, _ = transport_loss(x, F.normalize(torch.randn(40, 32), dim=-1), 0.01, n_iter=1000)
    assert float(loss) < 0.05 < float(rnd)


def test_identity_plan_is_the_mean_cosine_pull():
    x, y = _pair(n=20)
    loss, info = transport_loss(x, y, plan="identity")
    torch.testing.assert_close(loss, (1 - (x * y).sum(1)).mean())
    assert info["blocks"] == 1


def test_blocks_are_size_weighted_means_of_independent_problems():
    x, y = _pair(n=100, seed=4)
    loss, info = transport_loss(x, y, 0.1, block=40, n_iter=500, tol=1e-9)
    assert info["blocks"] == 3                     # 100 -> 33, 33, 34 (near-equal, none tiny)
    parts = [(0, 33), (33, 67), (67, 100)]
    expected = sum((hi - lo) / 100 * transport_loss(x[lo:hi], y[lo:hi], 0.1, block=1000, n_iter=500,
                                                    tol=1e-9)[0] for lo, hi in parts)
    torch.testing.assert_close(loss, expected)


def test_empty_input_and_bad_arguments():
    loss, info = transport_loss(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4))
    assert float(loss) == 0.0 and info["blocks"] == 0
    x, y = _pair(n=4)
    with pytest.raises(ValueError, match="plan"):
        transport_loss(x, y, plan="greedy")
    with pytest.raises(ValueError, match="method"):
        sinkhorn_plan(cosine_cost(x, y), 0.1, method="exact")
    with pytest.raises(ValueError, match="shape"):
        transport_loss(x, y[:3])
