"""The MIMEA model (mimea.models.mimea) on a hand-built tiny MMKGPair (and, briefly, the synthetic pair)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from mimea.data.pair import MMKGPair
from mimea.models import registry
from mimea.models.mimea import MIMEA, interleave_unique

K = 12          # entities per KG
L = 10          # links (i, K + i) for i < L


def tiny_pair(seed: int = 0, names: bool = False, images: bool = True) -> MMKGPair:
    """Two KGs of 12 entities; aligned entities share a latent vector that every modality sees (noisily)."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * K
    z = torch.randn(K, 6, generator=g)
    latent = torch.cat([z, z + 0.3 * torch.randn(K, 6, generator=g)])
    src = torch.randint(0, K, (30,), generator=g)
    dst = torch.randint(0, K, (30,), generator=g)
    rel = torch.randint(0, 3, (30,), generator=g)
    triples = torch.cat([torch.stack([src, rel, dst], 1), torch.stack([src + K, rel + 3, dst + K], 1)])
    rel_features = torch.zeros(n, 6)
    rel_features.index_put_((triples[:, 0], triples[:, 1]), torch.ones(len(triples)), accumulate=True)
    rel_features.index_put_((triples[:, 2], triples[:, 1]), torch.ones(len(triples)), accumulate=True)
    att = (latent @ torch.randn(6, 5, generator=g) > 0.3).float()
    att[3] = 0.0                                   # entity 3 (KG1) has no attributes
    att[K + 4] = 0.0                               # entity 16 (KG2) has no attributes
    img = F.normalize(latent @ torch.randn(6, 8, generator=g) + 0.2 * torch.randn(n, 8, generator=g), dim=1)
    img_mask = torch.ones(n, dtype=torch.bool)
    img_mask[[0, 5, K + 1, K + 5]] = False         # pair (5, 17) misses the image on both sides
    img[~img_mask] = 0.0
    name_features = F.normalize(latent @ torch.randn(6, 4, generator=g), dim=1) if names else None
    return MMKGPair(
        name="tiny", n_ent=n, kg1=torch.arange(K), kg2=torch.arange(K, n), triples=triples,
        links=torch.stack([torch.arange(L), torch.arange(L) + K], 1), rel_features=rel_features,
        att_features=att, img_features=img if images else None, img_mask=img_mask if images else
        torch.zeros(n, dtype=torch.bool), name_features=name_features,
        provenance={"image_features": "synthetic" if images else "absent", "missing_image_policy": "mask"})


def make(pair: MMKGPair | None = None, seed: int = 0, **overrides) -> MIMEA:
    torch.manual_seed(seed)
    cfg = MIMEA.Config(**{"dim": 16, "fusion_hidden": 8, **overrides})
    return MIMEA(pair or tiny_pair(), cfg)


def direct_icl(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """MCLEA's ICL per pair, written out loop by loop (independent of mimea.nn.losses)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    out = []
    for i in range(a.size(0)):
        per_dir = []
        for x, y in ((a, b), (b, a)):
            logits = [x[i] @ y[j] / tau for j in range(y.size(0))]
            logits += [x[i] @ x[k] / tau for k in range(x.size(0)) if k != i]
            logits = torch.stack(logits)
            per_dir.append(torch.logsumexp(logits, 0) - logits[i])
        out.append(0.5 * (per_dir[0] + per_dir[1]))
    return torch.stack(out)


def param_names(model: torch.nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters()}


# ------------------------------------------------------------------------------------------------
def test_registered_and_train_defaults():
    assert registry.get("mimea") is MIMEA
    assert MIMEA.train_defaults == {"lr": 5e-4, "weight_decay": 1e-4, "batch_size": 3500, "epochs": 500}
    from mimea.training.config import resolve

    cfg = resolve("mimea", "paper", model_overrides={"transport": "none"})
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs) == (5e-4, 3500, 500)
    assert MIMEA.Config(**cfg.model_config).transport == "none"


def test_forward_shapes_weights_and_presence():
    pair = tiny_pair()
    model = make(pair).eval()
    emb = model()
    names = emb.extras["weight_names"]
    assert names == ("graph", "relation", "attribute", "image")
    n, m, d = pair.n_ent, 4, 16
    assert emb.joint.shape == (n, m * d)
    assert set(emb.modalities) == set(names)
    torch.testing.assert_close(emb.modalities["image"].norm(dim=1), torch.ones(n))
    w, present = emb.extras["weights"], emb.extras["present"]
    assert torch.equal(present[:, 3], pair.img_mask)
    assert not present[3, 2] and not present[K + 4, 2] and present[:, 0].all()
    assert torch.all(w[~present] == 0) and torch.all(w[present] > 0)
    torch.testing.assert_close(w.sum(1), torch.ones(n))
    torch.testing.assert_close(emb.joint[:, 3 * d:], w[:, 3:] * emb.modalities["image"])
    assert emb.extras["alpha"].shape == (n, m) and float(emb.extras["kl"]) >= 0
    names2, w2 = model.modality_weights()
    assert names2 == names and torch.equal(w2, w)          # eval weights are deterministic (Beta means)
    assert model.embed().shape == (n, m * d)


def test_protocol_and_modalities_used():
    model = make(tiny_pair(names=True))
    p = model.protocol()
    assert p["names"] is False and p["modalities"] == ["graph", "relation", "attribute", "image"]
    assert p["images"] == "synthetic"
    with_names = make(tiny_pair(names=True), modalities=("graph", "relation", "attribute", "image", "name"))
    assert with_names.protocol()["names"] is True and "name" in with_names.protocol()["modalities"]
    no_img = make(tiny_pair(images=False))
    assert no_img.protocol()["modalities"] == ["graph", "relation", "attribute"]
    assert no_img.protocol()["images"] == "absent" and no_img.protocol()["modalities_skipped"] == ["image"]
    assert no_img().joint.shape == (2 * K, 3 * 16)


def test_each_ablation_switch_removes_exactly_its_parameters():
    base = param_names(make())
    fusion = {n for n in base if n.startswith("fusion.")}
    attention = {n for n in fusion if n.startswith("fusion.interaction.")}
    assert attention and fusion > attention
    assert param_names(make(interaction=False)) == base - attention
    assert param_names(make(fusion="mean", interaction=False, fusion_span=None)) == base - fusion
    soft = param_names(make(fusion="softmax", fusion_span=None))
    assert base - soft == {n for n in fusion if n.startswith("fusion.head.")}
    assert soft - base == {"fusion.score.weight", "fusion.score.bias"}
    for same in ({"transport": "none"}, {"transport": "identity"}, {"cl_weighting": "uniform"}):
        assert param_names(make(**same)) == base, same
    assert param_names(make(cl_weighting="uncertainty")) == base | {"cl_uncertainty.log_vars"}


def test_loss_is_the_documented_sum_of_its_terms():
    model = make(kl_weight=0.3, ot_weight=0.7).train()
    emb = model()
    loss, logs = model.loss(emb, tiny_pair().links)
    assert math.isclose(float(loss), logs["loss_cl"] + 0.7 * logs["loss_ot"] + 0.3 * logs["loss_kl"], rel_tol=1e-5)
    ot_terms = sum(logs[f"loss_ot_{m}"] for m in ("graph", "relation", "attribute", "image"))
    assert math.isclose(logs["loss_ot"], ot_terms, rel_tol=1e-5)
    assert all(isinstance(v, float) and math.isfinite(v) for v in logs.values())

    plain = make(transport="none", fusion="mean", interaction=False, fusion_span=None)
    loss_plain, logs_plain = plain.loss(plain(), tiny_pair().links)
    assert not any(k.startswith("loss_ot") or k == "loss_kl" for k in logs_plain)
    assert math.isclose(float(loss_plain), logs_plain["loss_cl"], rel_tol=1e-6)


def expected_cl(emb, links: torch.Tensor, tau: float, scale) -> torch.Tensor:
    """Joint ICL + per-modality ICL weighted by ``scale(min(w_a, w_b))``, written out (independent of the model)."""
    a, b = links[:, 0], links[:, 1]
    w = emb.extras["weights"].detach()
    expected = direct_icl(emb.joint[a], emb.joint[b], tau).mean()
    for i, name in enumerate(("graph", "relation", "attribute", "image")):
        conf = scale(torch.minimum(w[a, i], w[b, i]))
        expected = expected + (conf * direct_icl(emb.modalities[name][a], emb.modalities[name][b], tau)).mean()
    return expected


def test_contrastive_loss_equals_a_direct_computation():
    pair = tiny_pair()
    links = pair.links[:5]
    tau = 0.2
    model = make(pair, transport="none", kl_weight=0.0, tau=tau, cl_weighting="adaptive").eval()
    emb = model()
    loss, logs = model.loss(emb, links)
    expected = expected_cl(emb, links, tau, lambda c: 4 * c)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    a, b = links[:, 0], links[:, 1]
    # uniform weighting: plain sum; uncertainty weighting starts equal to it (log-variances 0)
    uni = make(pair, transport="none", kl_weight=0.0, tau=tau, cl_weighting="uniform").eval()
    unc = make(pair, transport="none", kl_weight=0.0, tau=tau, cl_weighting="uncertainty").eval()
    e_uni = uni()
    direct = direct_icl(e_uni.joint[a], e_uni.joint[b], tau).mean() + sum(
        direct_icl(e_uni.modalities[m][a], e_uni.modalities[m][b], tau).mean() for m in e_uni.modalities)
    torch.testing.assert_close(uni.loss(e_uni, links)[0], direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unc.loss(unc(), links)[0], direct, rtol=1e-5, atol=1e-5)


def test_pairs_missing_a_modality_count_zero_for_it():
    pair = tiny_pair()
    model = make(pair).train()
    emb = model()
    # pairs (0, 12) and (5, 17): image missing on at least one side; (5, 17) on both
    _, logs = model.loss(emb, torch.tensor([[0, K], [5, K + 5]]))
    assert logs["loss_cl_image"] == 0.0 and logs["loss_cl_graph"] > 0
    assert logs["loss_ot_image"] > 0                          # OT runs over entities: 12 has an image
    _, logs = model.loss(emb, torch.tensor([[5, K + 5], [3, K + 3]]))
    only_3 = torch.tensor([[3, K + 3]])
    assert math.isclose(logs["loss_ot_image"], model.loss(emb, only_3)[1]["loss_ot_image"], rel_tol=1e-5)
    _, logs_u = make(pair, cl_weighting="uniform").loss(emb, torch.tensor([[0, K], [5, K + 5]]))
    assert logs_u["loss_cl_image"] > 0                        # the ablation counts them


@pytest.mark.parametrize("span", [None, 0.5])
def test_small_ot_eps_gives_finite_loss_and_gradients(span):
    model = make(ot_eps=1e-3, ot_iters=100, fusion_span=span).train()
    loss, logs = model.loss(model(), tiny_pair().links)
    loss.backward()
    # 100 iterations at eps=1e-3 do not always reach the marginals (the log-domain rerun needs more); the plan is
    # finite and so are the gradients
    assert math.isfinite(float(loss)) and logs["ot_marginal_error"] < (0.5 if span is None else 1.0)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_interleave_unique_keeps_pairs_together():
    links = torch.tensor([[3, 9], [1, 9], [3, 7]])
    assert interleave_unique(links).tolist() == [3, 9, 1, 7]


@pytest.mark.parametrize("overrides", [{}, {"fusion": "softmax", "transport": "identity", "fusion_span": None},
                                       {"fusion": "mean", "interaction": False, "cl_weighting": "uncertainty",
                                        "fusion_span": None}])
def test_a_few_adam_steps_reduce_the_loss(overrides):
    pair = tiny_pair()
    model = make(pair, **overrides)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = float(model.loss(model(), pair.links)[0])
        model.train()
        return value

    before = eval_loss()
    for _ in range(5):
        loss, _ = model.loss(model(), pair.links)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.8 * before, (before, after)


def test_config_validation_is_explicit():
    with pytest.raises(ValueError, match="fusion"):
        MIMEA.Config(fusion="max")
    with pytest.raises(ValueError, match="interaction"):
        MIMEA.Config(fusion="mean")                        # interaction=True by default: ask for both
    with pytest.raises(ValueError, match="modalities"):
        MIMEA.Config(modalities=("graph", "sound"))
    with pytest.raises(ValueError, match="ot_eps"):
        MIMEA.Config(ot_eps=0.0)
    assert MIMEA.Config(modalities=["graph", "image"]).modalities == ("graph", "image")
    cfg = MIMEA.Config()
    assert MIMEA.Config(**dataclasses.asdict(cfg)) == cfg


def test_search_space_builds_a_valid_config():
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space = MIMEA.search_space(trial)
    assert set(space) == {"dim", "tau", "ot_eps", "ot_weight", "kl_weight", "prior_alpha", "prior_beta", "dropout"}
    MIMEA.Config(**space)


def test_trains_on_the_synthetic_pair(synthetic_pair):
    pair = synthetic_pair
    model = make(pair, dim=16, ot_block=128)
    links = pair.links[:128]
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.eval()
    with torch.no_grad():
        before = float(model.loss(model(), links)[0])
    model.train()
    for _ in range(3):
        loss, logs = model.loss(model(), links)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(model.loss(model(), links)[0])
    assert after < before and logs["ot_fallbacks"] == 0
    assert model.embed().shape == (pair.n_ent, 16 * len(model.modality_names))


def test_balanced_weighting_divides_the_confidence_by_its_batch_mean():
    pair = tiny_pair()
    links = pair.links[:6]
    tau = 0.2
    model = make(pair, transport="none", kl_weight=0.0, tau=tau, cl_weighting="balanced").eval()
    emb = model()
    expected = expected_cl(emb, links, tau, lambda c: c / c.mean())
    torch.testing.assert_close(model.loss(emb, links)[0], expected, rtol=1e-5, atol=1e-5)


def test_ot_target_others_pulls_each_modality_towards_the_mean_of_the_rest():
    from mimea.nn.transport import transport_loss

    pair = tiny_pair()
    model = make(pair, ot_target="others", transport="identity", kl_weight=0.0).eval()
    emb = model()
    links = pair.links[:4]
    _, logs = model.loss(emb, links)
    ents = interleave_unique(links)
    tokens, present = emb.extras["tokens"], emb.extras["present"]
    for i, name in enumerate(model.modality_names):
        rows = [int(x) for x in ents if present[x, i] and (present[x].sum() > 1)]
        others = torch.stack([tokens[x][[k for k in range(tokens.size(1)) if k != i and present[x, k]]].mean(0)
                              for x in rows])
        expected, _ = transport_loss(tokens[rows, i], others, plan="identity")
        assert math.isclose(logs[f"loss_ot_{name}"], float(expected), rel_tol=1e-5), name
    joint = make(pair, transport="identity", kl_weight=0.0).eval()
    assert joint.loss(joint(), links)[1]["loss_ot_graph"] != pytest.approx(logs["loss_ot_graph"])


def test_a_model_field_added_later_keeps_the_ids_of_earlier_runs():
    from mimea.store.ids import canonical
    from mimea.training.config import resolve

    cfg = dataclasses.asdict(resolve("mimea", "cpu"))
    assert cfg["model_config"]["ot_target"] == "joint"
    earlier = {**cfg, "model_config": {k: v for k, v in cfg["model_config"].items() if k != "ot_target"}}
    assert canonical(cfg) == canonical(earlier)
    other = {**cfg, "model_config": {**cfg["model_config"], "ot_target": "others"}}
    assert canonical(other) != canonical(cfg)


def test_fusion_holdout_splits_what_trains_the_weights_from_what_trains_the_encoders():
    pair = tiny_pair()
    model = make(pair, fusion_holdout=0.5, transport="none", kl_weight=0.0).train()
    model.prepare_training(pair.links)
    held = model.fusion_rows[pair.links[:, 0]]
    assert int(held.sum()) == 5                                     # half of the 10 links, by their KG1 entity
    again = make(pair, fusion_holdout=0.5, transport="none", kl_weight=0.0)
    again.prepare_training(pair.links)
    assert torch.equal(again.fusion_rows, model.fusion_rows)        # a function of the links: a resume marks the same

    fusion_params = {n for n, _ in model.named_parameters() if n.startswith("fusion.")}

    def grads(links):
        model.zero_grad(set_to_none=True)
        loss, logs = model.loss(model(), links)
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters()}, logs

    only_held, logs = grads(pair.links[held])                       # held-out links: the weights learn, nothing else
    assert "loss_fusion_holdout" in logs
    assert any(only_held[n] is not None and only_held[n].abs().sum() > 0 for n in fusion_params)
    assert all(g is None or float(g.abs().sum()) == 0 for n, g in only_held.items() if n not in fusion_params)
    only_enc, logs = grads(pair.links[~held])                       # the others: the encoders learn, not the weights
    assert "loss_fusion_holdout" not in logs
    assert all(only_enc[n] is None or float(only_enc[n].abs().sum()) == 0 for n in fusion_params)
    assert any(g is not None and float(g.abs().sum()) > 0 for n, g in only_enc.items() if n not in fusion_params)
    # the trainer's batch forward renumbers the links into the batch's rows: the same split
    for links, learns in ((pair.links[held], fusion_params), (pair.links[~held], None)):
        model.zero_grad(set_to_none=True)
        model.batch_loss(links)[0].backward()
        for n, p in model.named_parameters():
            moved = p.grad is not None and float(p.grad.abs().sum()) > 0
            if learns is not None and n not in learns:
                assert not moved, n                                 # held-out links move the fusion only
            if learns is None and n in fusion_params:
                assert not moved, n                                 # the other links never move it
    model.eval()                                                    # evaluation: no hold-out split
    assert "loss_fusion_holdout" not in model.loss(model(), pair.links)[1]
    with pytest.raises(ValueError, match="fusion_holdout"):
        MIMEA.Config(fusion_holdout=1.0)
