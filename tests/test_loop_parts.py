"""The trainer's composable parts: epoch plan (accumulation), schedule, optimiser; and the ``authors`` profile
(every seed trains, the last epoch is the result, the test curve recorded)."""
from __future__ import annotations

import math

import pytest
import torch

from mimea.pipeline import run
from mimea.training.config import resolve
from mimea.training.epoch_plan import EpochPlan
from mimea.training.schedule import build_schedule, lr_multiplier


def test_cosine_warmup_starts_at_zero_peaks_after_warmup_and_ends_at_zero():
    total, warm = 100, 0.15
    m = [lr_multiplier("cosine_warmup", s, total, warm) for s in range(total)]
    assert m[0] == 0.0                                    # the first step at lr 0 (transformers' schedule)
    assert m[15] == pytest.approx(1.0) and max(m) == pytest.approx(1.0)
    assert m[7] == pytest.approx(7 / 15)
    assert m[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 84 / 85)))
    assert lr_multiplier("cosine_warmup", 500, total, warm) == pytest.approx(0.0)   # past the end: stays 0
    assert all(a >= b for a, b in zip(m[15:], m[16:]))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_schedule(opt, "cosine_warmup", total, warm)
    assert opt.param_groups[0]["lr"] == 0.0
    for _ in range(15):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="train.schedule"):
        build_schedule(opt, "cosine", total, warm)


def test_epoch_plan_groups_batches_into_steps():
    links = torch.arange(20).reshape(10, 2)
    gen = torch.Generator().manual_seed(0)
    per_batch = EpochPlan(3).steps(links, gen)
    assert [len(s) for s in per_batch] == [1, 1, 1, 1] and EpochPlan(3).optimizer_steps(10) == 4
    whole = EpochPlan(3, "epoch").steps(links, torch.Generator().manual_seed(0))
    assert len(whole) == 1 and [len(b) for b in whole[0]] == [3, 3, 3, 1]
    assert torch.equal(torch.cat(whole[0]), torch.cat([s[0] for s in per_batch]))   # same batches, one step
    assert EpochPlan(3, "epoch").optimizer_steps(10) == 1
    assert EpochPlan(3, steps_per_epoch=7).n_batches(10) == 7
    with pytest.raises(ValueError, match="train.accumulate"):
        EpochPlan(3, "batch")


@pytest.mark.parametrize("name", ["mclea", "meaformer", "gcn_align"])
def test_summed_loss_is_one_forward_with_the_summed_gradient(name, synthetic_pair):
    """accumulate="epoch": one backward of the summed batch losses = the per-batch backwards summed (theirs)."""
    from mimea.models import registry
    from mimea.training.config import model_config

    cfg = resolve(name, "smoke")
    torch.manual_seed(0)
    model = registry.get(name)(synthetic_pair, model_config(cfg))
    model.eval()   # no dropout: the two computations see the same forward
    links = synthetic_pair.links[:90]
    batches = [links[:40], links[40:80], links[80:]]
    params = [p for p in model.parameters() if p.requires_grad]
    start = {k: v.clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
    torch.manual_seed(1)   # the same negative draws (GCN-Align samples them) in both computations
    loss, _ = model.summed_loss(batches)
    want = torch.autograd.grad(loss, params, allow_unused=True)
    got = [torch.zeros_like(p) for p in params]
    model.load_state_dict(start)   # the negative generator's state travels in the state dict
    torch.manual_seed(1)
    for b in batches:
        lb, _ = model.batch_loss(b)
        for g, d in zip(got, torch.autograd.grad(lb, params, allow_unused=True)):
            if d is not None:
                g += d
    for w, g in zip(want, got):
        if w is not None:
            assert torch.allclose(w, g, atol=1e-5, rtol=1e-4)


def test_authors_profile_trains_on_every_seed_and_keeps_the_last_epoch(tmp_path):
    cfg = resolve("gcn_align", "authors", {"train": {"epochs": 6, "eval_every": 2, "progress": False},
                                           "data": {"synthetic": {"n_latent": 300}}})
    assert cfg.split.val_fraction == 0.0 and cfg.train.patience == 0 and cfg.eval.test_curve
    out = run(cfg, tmp_path)
    meta, res = out["metadata"], out["results"]
    n = meta["split"]["train"] + meta["split"]["test"]
    assert meta["split"]["valid"] == 0 and meta["split"]["train"] == int(n // 1 * cfg.split.ratio)  # all seeds
    assert meta["protocol"]["selection"] == "last_epoch" and meta["protocol"]["test_curve"] is True
    assert meta["best_epoch"] == 6 and meta["epochs_run"] == 6 and res["valid"] == {}
    tested = [r for r in res["curve"] if "test" in r]
    assert [r["epoch"] for r in tested] == [2, 4, 6]
    assert tested[-1]["test"]["l2r"] == res["test"]["l2r"]     # the result IS the last epoch's model


def test_paper_profile_never_stops_early_and_selects_on_validation():
    cfg = resolve("meaformer", "paper")
    assert cfg.train.patience == 0 and cfg.split.val_fraction > 0 and not cfg.eval.test_curve


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_adam_takes_the_fused_kernel_and_makes_the_loops_update(name):
    from mimea.training.optim import build_optimizer

    g = torch.Generator().manual_seed(0)
    start = [torch.randn(300, 17, generator=g), torch.randn(17, generator=g)]
    runs = {}
    for fused in (True, False):
        params = [torch.nn.Parameter(x.clone()) for x in start]
        opt = (build_optimizer(name, params, 1e-3, 1e-4) if fused else
               (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(params, lr=1e-3, weight_decay=1e-4))
        assert bool(opt.param_groups[0].get("fused")) is fused
        gen = torch.Generator().manual_seed(1)
        for _ in range(30):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        runs[fused] = params
    assert not torch.equal(runs[True][0], start[0])                   # it did update
    for a, b in zip(runs[True], runs[False]):
        assert (a - b).abs().max() <= 4e-7                              # rounding, not a different method
