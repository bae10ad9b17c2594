"""Sweeps beyond one process: benchmarks/run.py and mimea tune through submitit (its local executor here; Slurm
runs the same code), with the run store shared and the per-run lock in charge; and the flags' errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.run import main as run_main  # noqa: E402
from mimea import cli  # noqa: E402

submitit = pytest.importorskip("submitit", reason="the submitit extra (nox -s tests installs it)")

TINY = ["--set", "train.epochs=2", "train.eval_every=1", "train.threads=1", "data.synthetic.n_latent=200"]


def _sweep(tmp_path: Path, *extra: str, sets: tuple[str, ...] = ()) -> int:
    return run_main(["--table", "5", "--models", "gcn_align", "--replicates", "2", "--synthetic", "--no-progress",
                     "--no-figures", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"),
                     "--executor", "submitit", "--submitit-cluster", "local", *extra, *TINY, *sets])


def test_two_run_sweep_through_submitit_and_a_rerun_collects_it(tmp_path, capsys):
    assert _sweep(tmp_path) == 0
    out = capsys.readouterr().out
    assert "runs as submitit (local)" in out and "0 reused from the store, 2 run" in out
    runs = sorted((tmp_path / "results" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:   # each run trained in its own submitit job, its output in the store's log
        sweep = json.loads((run / "sweep.json").read_text())
        assert sweep["launcher"] == "submitit-local" and sweep["log"] == f"logs/{run.name}.log"
        assert (tmp_path / "results" / sweep["log"]).read_text().strip()
    assert len(list((tmp_path / "results" / "submitit").glob("*_result.pkl"))) == 2
    md = (tmp_path / "out" / "table5.md").read_text()
    assert "| GCN-Align " in md and "n=2 replicate" in md and "submitit-local" in md
    # a rerun (another machine, or after a crash) submits nothing and collects what finished
    assert _sweep(tmp_path) == 0
    assert "2 reused from the store, 0 run" in capsys.readouterr().out
    assert len(list((tmp_path / "results" / "submitit").glob("*_result.pkl"))) == 2


def test_failed_submitit_run_is_reported_with_its_logs(tmp_path, capsys):
    assert _sweep(tmp_path, "--replicates", "1", sets=("train.lr=1e300",)) == 1
    err = capsys.readouterr().err
    assert "failed:" in err and ".log" in err and "job " in err


def test_tune_workers_through_submitit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIMEA_TUNE_HEARTBEAT", "5")
    argv = ["tune", "--model", "gcn_align", "--n-trials", "2", "--no-progress", "--results", str(tmp_path),
            "--workers", "2", "--executor", "submitit", "--submitit-cluster", "local", *TINY]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 worker job(s) submitted" in out and out.count(" COMPLETE ") == 2
    study_dir = tmp_path / "tuning" / "gcn_align-synthetic-r0.2-smoke"
    assert (study_dir / "best.json").is_file() and len(list((study_dir / "runs").iterdir())) == 2
    assert len(list((tmp_path / "submitit").glob("*_result.pkl"))) == 2


@pytest.mark.parametrize("argv, message", [
    (["tune", "--workers", "2"], "add --executor submitit"),
    (["tune", "--submitit-set", "timeout_min=5"], "need --executor submitit"),
    (["tune", "--executor", "submitit", "--submitit-cluster", "local", "--submitit-set", "bogus=1"],
     "--submitit-set: Parameter 'bogus'"),
])
def test_executor_flag_errors_are_one_line(tmp_path, capsys, argv, message):
    assert cli.main([*argv, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.parametrize("argv, message", [
    (["--submitit-cluster", "local"], "need --executor submitit"),
    (["--executor", "submitit", "--submitit-cluster", "local", "--submitit-set", "local_bogus=1"],
     "--submitit-set: Unknown argument 'bogus'"),
])
def test_run_py_executor_flag_errors_are_one_line(tmp_path, capsys, argv, message):
    assert run_main(["--table", "2", "--results", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
