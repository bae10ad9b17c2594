"""benchmarks/fidelity/run.py: our-curve reader, table and figure from a fake reference (no authors' code)."""
from __future__ import annotations

import json

import pytest

from benchmarks.fidelity import run as R

REF = {"model": "eva", "dataset": "synthetic", "ratio": 0.3,
       "authors": {"repository": "cambridgeltl/eva", "commit": "948ffbf3bf70cd3db1d3b8fcefc1660421d87a1f"},
       "command": "fake", "machine": {"cpu": "fake", "threads": 1}, "standin": {"seed": 0},
       "seconds_per_epoch": 2.0, "peak_rss_mib": 1000.0,
       "curve": [{"epoch": e, "test": {"l2r": {"hits@1": 0.1 * e, "hits@10": 0.3, "mrr": 0.2}}, "wall_s": 2.0}
                 for e in (1, 2, 3)]}


def test_read_our_curve_tolerant():
    res = {"curve": [{"epoch": 1, "time_s": 1.5, "valid": {"hits@1": 0.9}},                    # no test: skipped
                     {"epoch": 2, "time_s": 4.0, "test": {"l2r": {"hits@1": 0.2}, "mean": {"hits@1": 0.3}}},
                     {"epoch": 3, "time_s": 5.0, "test": {"mean": {"hits@1": 0.4, "mrr": 0.5}}},
                     {"epoch": 4, "test": {"hits@1": 0.6}, "epoch_time_s": 7.0}]}
    curve = R.read_our_curve(res)
    assert [(r["epoch"], r["test"]["hits@1"], r["wall_s"]) for r in curve] == [(2, 0.2, 2.5), (3, 0.4, 1.0),
                                                                              (4, 0.6, 7.0)]
    assert R.our_seconds_per_epoch(res) == pytest.approx(1.5)


def test_run_from_reference_and_results(tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(REF))
    ours = tmp_path / "results.json"
    ours.write_text(json.dumps({"curve": [{"epoch": e, "time_s": 1.0 * e, "test": {"l2r": {"hits@1": 0.15 * e,
                                                                                         "hits@10": 0.5, "mrr": 0.3}}}
                                          for e in (1, 2)]}))
    out = tmp_path / "out"
    assert R.main(["--model", "eva", "--epochs", "2", "--dataset", "synthetic", "--ratio", "0.3", "--reference",
                   "--reference-file", str(ref), "--ours-results", str(ours), "--out", str(out)]) == 0
    md = (out / "fidelity-eva.md").read_text()
    assert "| 2 | 0.2000 | 0.3000 |" in md and "| 3 |" not in md            # cut at --epochs
    assert "| seconds per epoch (median, train + test) | 2.0 | 1.0 | 0.50 |" in md
    assert (out / "fidelity-eva.png").stat().st_size > 1000


def test_run_ours_smoke_on_synthetic(tmp_path):
    """Trains ours for real (smoke profile, synthetic data, 2 epochs) through the CLI command run.py builds."""
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(REF))
    out = tmp_path / "out"
    assert R.main(["--model", "eva", "--epochs", "2", "--dataset", "synthetic", "--ratio", "0.3", "--reference",
                   "--reference-file", str(ref), "--our-profile", "smoke", "--out", str(out)]) == 0
    md = (out / "fidelity-eva.md").read_text()
    assert "--profile smoke --epochs 2" in md and "train.eval_every=1" in md
    assert (out / "fidelity-eva.png").is_file()
