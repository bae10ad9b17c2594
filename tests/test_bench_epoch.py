"""benchmarks/bench_epoch.py measures the epoch of the split it is asked for (a benchmark; nothing here is timed)."""
from __future__ import annotations

from benchmarks import bench_epoch


def test_the_seed_ratio_sets_the_split_it_measures():
    small = bench_epoch.measure("gcn_align", "synthetic", None, "smoke", "cpu", 1, 1, ratio=0.2)
    large = bench_epoch.measure("gcn_align", "synthetic", None, "smoke", "cpu", 1, 1, ratio=0.5)
    assert (small["ratio"], large["ratio"]) == (0.2, 0.5)
    # the same seeds carve the same validation share: 2.5x the seed links, up to rounding
    assert 2.3 < large["seed_links"] / small["seed_links"] < 2.7
    assert small["epoch_s"] > 0 and large["steps_per_epoch"] >= 1


def test_the_authors_ratio_is_printed_for_the_20_percent_split_only(monkeypatch, tmp_path):
    (tmp_path / "mclea-FBDB15K-r20.json").write_text('{"seconds_per_epoch": 10.0}', encoding="utf-8")
    monkeypatch.setattr(bench_epoch, "REFERENCE", tmp_path)   # a reference at 20 % only
    row = {"model": "mclea", "dataset": "FBDB15K", "epoch_s": 2.0, "steps_per_epoch": 1, "peak_mb": 1.0,
           "parameters": 1e6}
    assert "5.0x (10.0 s)" in bench_epoch._row({**row, "ratio": 0.2})
    assert bench_epoch._row({**row, "ratio": 0.5}).endswith("| - |")
