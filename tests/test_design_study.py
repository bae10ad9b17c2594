"""The design study's ablation reading: paired per-seed deltas against the full model, and the verdict."""
from __future__ import annotations

import json

import pytest

from benchmarks import design_study as ds


def _write_run(root, name, model_config, seed, mrr, h1, epochs=125, dataset="FBDB15K"):
    run = root / "runs" / name
    run.mkdir(parents=True)
    cfg = {"data": {"dataset": dataset}, "split": {"ratio": 0.2}, "train": {"epochs": epochs},
           "eval": {"valid_pool": "unseen"}, "seed": seed, "model_config": model_config}
    res = {"best_epoch": 5, "curve": [{"epoch": 5, "w_graph": 0.3}],
           "valid": {"mean": {"mrr": mrr, "hits@1": h1, "hits@10": 0.9}},
           "test": {"l2r": {"mrr": mrr - 0.01, "hits@1": h1 - 0.01, "hits@10": 0.8}}}
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "results.json").write_text(json.dumps(res))


def test_ablation_pairs_seeds_and_judges_against_the_full_models_seed_std(tmp_path):
    defaults = ds._defaults()
    full = {0: 0.50, 1: 0.52, 2: 0.54}  # seed std 0.02
    for s, v in full.items():
        _write_run(tmp_path, f"mimea-full-s{s}", defaults, s, v, v - 0.1)
    # transport off: drops 0.05 on every seed (earns its place); cl uniform: drops 0.01 (does not)
    for s, v in full.items():
        _write_run(tmp_path, f"mimea-noot-s{s}", {**defaults, "transport": "none"}, s, v - 0.05, v - 0.1)
        _write_run(tmp_path, f"mimea-uni-s{s}", {**defaults, "cl_weighting": "uniform"}, s, v - 0.01, v - 0.1)
    # interaction off on one seed only: no verdict
    _write_run(tmp_path, "mimea-noint-s0", {**defaults, "interaction": False}, 0, 0.3, 0.2)
    # another cell (epochs) never enters
    _write_run(tmp_path, "mimea-other-s1", {**defaults, "transport": "none"}, 1, 0.99, 0.99, epochs=500)

    rows = ds.collect(tmp_path, "FBDB15K", 0.2, 125, test=True)
    by_module = {item["variant"]: item for item in ds.ablation(rows, test=True)}
    noot = by_module["transport=none"]
    assert noot["seeds"] == [0, 1, 2] and noot["d_valid_mrr"] == pytest.approx([-0.05] * 3)
    assert noot["sd_full"] == pytest.approx(0.02) and noot["earns"] is True
    uni = by_module["cl_weighting=uniform"]
    assert uni["earns"] is False and uni["d_test_h1"] == pytest.approx([0.0] * 3)
    assert by_module["interaction=False"]["earns"] is None
    fusion_off = next(k for k in by_module if k.startswith("fusion=mean"))
    assert by_module[fusion_off]["seeds"] == []
    text = ds.render_ablation(rows, {}, test=True)
    assert "-0.050 ± 0.000" in text and "n/a (< 2 seeds)" in text


def test_a_bad_baseline_spec_is_a_one_line_error(tmp_path, capsys):
    _write_run(tmp_path, "mimea-full-s0", ds._defaults(), 0, 0.5, 0.4)
    assert ds.main(["--dataset", "FBDB15K", "--ratio", "0.2", "--epochs", "125", "--results", str(tmp_path),
                    "--ablation", "--baseline", "mclea"]) == 2
    assert "expected MODEL:EPOCHS" in capsys.readouterr().err
