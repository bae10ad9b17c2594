"""benchmarks/valid_pool_study.py: which pool's selection the test agrees with, read from stored curves."""
from __future__ import annotations

import json

import pytest

from benchmarks import valid_pool_study as vps
from mimea.pipeline import run
from mimea.training.config import resolve


def _write_run(root, name, curve, *, model="mimea", dataset="FBDB15K", seed=0, compare="unseen", test_curve=True):
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    cfg = {"model": model, "seed": seed, "data": {"dataset": dataset},
           "eval": {"valid_pool": "valid", "valid_pool_compare": compare, "test_curve": test_curve}}
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (folder / "results.json").write_text(json.dumps({"curve": curve}), encoding="utf-8")


def _point(epoch, small, unseen, test):
    return {"epoch": epoch, "valid": {"mrr": small}, "valid_unseen": {"mrr": unseen},
            "test": {"l2r": {"mrr": test}}}


def test_each_pool_is_scored_by_the_test_at_the_epoch_it_would_select(tmp_path):
    # the small pool saturates and picks epoch 20; the unseen pool follows the test and picks epoch 40
    curve = [{"epoch": 5, "loss": 1.0}, _point(10, 0.80, 0.30, 0.31), _point(20, 0.90, 0.40, 0.40),
             _point(30, 0.89, 0.44, 0.45), _point(40, 0.88, 0.46, 0.47), _point(50, 0.87, 0.45, 0.46),
             _point(60, 0.86, 0.455, 0.465)]
    _write_run(tmp_path, "a", curve)
    _write_run(tmp_path, "no-compare", curve, compare=None)           # not a study run: skipped
    _write_run(tmp_path, "other-ds", curve, dataset="FBYG15K")
    runs = vps.read_runs(tmp_path, "FBDB15K")
    assert [r["id"] for r in runs] == ["a"] and len(runs[0]["evals"]) == 6   # loss-only records are not evaluations
    row = vps.study(runs[0])
    assert row["best_test"] == 0.47 and row["best_test_epoch"] == 40
    small, unseen = row["pools"]["valid"], row["pools"]["unseen"]
    assert (small["epoch"], small["test"]) == (20, 0.40) and small["regret"] == pytest.approx(0.07)
    assert (unseen["epoch"], unseen["regret"]) == (40, 0.0) and unseen["rho"] == pytest.approx(1.0)
    assert small["rho_late"] == pytest.approx(0.5)          # the last three: the small pool only falls, the test not
    text = vps.render([row])
    assert "| mimea FBDB15K s0 | 6 | 0.470 (40) |" in text and "40, 0.470, 0.000, 1.00 / 1.00" in text


def test_spearman_handles_ties_and_short_series():
    assert vps.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert vps.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert vps.spearman([1, 1, 2, 3], [5, 5, 6, 7]) == pytest.approx(1.0)
    assert vps.spearman([1, 2], [1, 2]) is None and vps.spearman([1, 1, 1], [1, 2, 3]) is None
    assert vps.render([]).startswith("No stored run")


def test_a_real_run_feeds_the_study(tmp_path, capsys):
    cfg = resolve("gcn_align", "smoke", {"train": {"epochs": 6, "eval_every": 2, "patience": 0, "progress": False},
                                         "eval": {"test_curve": True, "valid_pool_compare": "unseen"}})
    stored = run(cfg, tmp_path)
    assert vps.main(["--results", str(tmp_path), "--out", str(tmp_path / "study.md")]) == 0
    row = vps.study(vps.read_runs(tmp_path)[0])
    assert row["pools"]["valid"]["epoch"] == stored["metadata"]["best_epoch"]   # the run selects on its own pool
    assert (tmp_path / "study.md").read_text(encoding="utf-8").strip() == capsys.readouterr().out.strip()
