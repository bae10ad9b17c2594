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


def test_gcn_align_table_and_authors_evaluation_on_our_side(tmp_path, monkeypatch):
    """GCN-Align: ours is evaluated with the authors' cityblock ranks; the table shows training seconds per epoch,
    seconds per test and whether both sides used the same test links."""
    import numpy as np
    import torch

    import mimea.evaluation.ranking as ranking
    from benchmarks.fidelity import cityblock, ours_eval

    emb = torch.randn(12, 4)
    pairs = torch.tensor([[i, 6 + i] for i in range(6)])
    got = ours_eval.cityblock_evaluate(emb, pairs)
    x = emb.numpy()
    want = cityblock.metrics(*cityblock.ranks_from_distance(
        np.abs(x[pairs[:, 0].numpy(), None, :] - x[None, pairs[:, 1].numpy(), :]).sum(-1)))
    assert got["l2r"] == pytest.approx(want["l2r"]) and got["r2l"] == pytest.approx(want["r2l"])
    monkeypatch.setattr(ranking, "evaluate", ranking.evaluate)   # restored after the test
    ours_eval.install(tmp_path / "csls.jsonl")
    both = ranking.evaluate(emb, pairs, similarity="csls", csls_k=3, chunk_size=4)
    assert both["l2r"] == pytest.approx(want["l2r"]) and "hits@1" in both["ours"]["l2r"]
    assert json.loads((tmp_path / "csls.jsonl").read_text())["similarity"] == "csls"

    ref = {**REF, "model": "gcn_align", "standin": None, "seconds_per_epoch": 0.4, "seconds_per_test": 20.0,
           "evaluation": "cityblock", "split": "lineage", "test_sha1": "abc",
           "curve": [{"epoch": e, "test": {"l2r": {"hits@1": 0.05, "hits@10": 0.17, "mrr": 0.09}}} for e in (25, 50)]}
    ours = [{"epoch": 25, "test": {"hits@1": 0.06, "hits@10": 0.18, "mrr": 0.1}, "wall_s": 1.0}]
    md = R.table("gcn_align", ref, ours, {"seconds_per_epoch": 1.0, "seconds_per_test": 25.0, "test_sha1": "abc"})
    assert "no image features" in md and "(same test links)" in md
    assert "| 25 | 0.0500 | 0.0600 |" in md and "| 50 | 0.0500 |  |" in md
    assert "| seconds per epoch (median, training only) | 0.40 | 1.00 | 2.50 |" in md
    assert "| seconds per test (median) | 20.0 | 25.0 | 1.25 |" in md
    assert "DIFFERENT" in R.table("gcn_align", ref, ours, {"test_sha1": "xyz"})


def test_our_seconds_per_test():
    res = {"curve": [{"epoch": 1, "time_s": 1.0}, {"epoch": 2, "time_s": 2.0, "test": {}},
                     {"epoch": 3, "time_s": 2.5}, {"epoch": 4, "time_s": 3.0},
                     {"epoch": 5, "time_s": 10.5, "test": {}}]}
    # steps after epoch 1: 1.0 (tested), 0.5, 0.5, 7.5 (tested): plain median 0.5, tests 0.5 and 7.0 -> 3.75
    assert R.our_seconds_per_test(res) == pytest.approx(3.75)
    assert R.our_seconds_per_epoch(res) == pytest.approx(1.0)   # median of every step: 1, 1, .5, .5, 7.5


def test_recorded_commands_hold_no_absolute_path_of_this_machine(tmp_path):
    """Committed references and tables name the project's interpreter ``python``, its files relative to the
    repository and the scratch folder ``$SCRATCH``."""
    import sys

    from benchmarks.fidelity import authors as A

    scratch = tmp_path / "scratch"
    cmd = (f"/usr/bin/time -v {sys.executable} -m mimea.cli train --results {scratch}/fid/ours-store "
           f"--data-dir {scratch}/data/mmkg --x {A.REPO_ROOT}/benchmarks/fidelity/shim.py --y {A.REPO_ROOT}/docs")
    out = A.portable_command(cmd, scratch=scratch)
    assert out == ("/usr/bin/time -v python -m mimea.cli train --results $SCRATCH/fid/ours-store "
                   "--data-dir $SCRATCH/data/mmkg --x benchmarks/fidelity/shim.py --y docs")


def test_a_reference_only_run_names_the_folder_holding_out_and_data_dir_scratch(tmp_path):
    """``--reference`` (no authors' checkout): ``$SCRATCH`` is the folder holding both ``--out`` and
    ``--data-dir``, so neither path of this machine reaches the table (seen: ``--data-dir /work/...``)."""
    import argparse

    from benchmarks.fidelity import authors as A

    scratch = tmp_path / "scratch"
    args = argparse.Namespace(authors_code=None, out=str(scratch / "fid" / "r2"), data_dir=str(scratch / "d" / "mmkg"))
    assert R._scratch_of(args) == scratch.resolve()
    cmd = f"python -m mimea.cli train --results {scratch.resolve()}/fid/r2/s --data-dir {scratch.resolve()}/d/mmkg"
    assert A.portable_command(cmd, scratch=R._scratch_of(args)) == (
        "python -m mimea.cli train --results $SCRATCH/fid/r2/s --data-dir $SCRATCH/d/mmkg")
    only_out = argparse.Namespace(authors_code=None, out=str(scratch / "fid" / "r2"), data_dir=None)
    assert R._scratch_of(only_out) == (scratch / "fid").resolve()
    inside = argparse.Namespace(authors_code=None, out=str(A.REPO_ROOT / "fidelity-out"), data_dir=None)
    assert R._scratch_of(inside) is None


def test_an_interpreter_inside_the_repository_is_still_plain_python(monkeypatch):
    """CI's interpreter lies in the clone (.nox/tests/bin/python): it is named ``python``, not by a path."""
    import sys

    from benchmarks.fidelity import authors as A

    exe = str(A.REPO_ROOT / ".nox" / "tests" / "bin" / "python")
    monkeypatch.setattr(sys, "executable", exe)
    assert A.portable_command(f"{exe} -m mimea.cli train --out {A.REPO_ROOT}/x") == "python -m mimea.cli train --out x"
