"""Optuna studies: the search space, exact trial counting, several worker processes on one study (SQLite and
PostgreSQL), a worker killed mid-trial, and the report files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mimea.models import registry
from mimea.store import RunStore
from mimea.training.config import resolve
from mimea.tuning import study as tstudy
from mimea.tuning.objective import FINISHED, Objective, SurplusTrial, config_of_params, trial_config
from mimea.tuning.space import suggest

ROOT = Path(__file__).resolve().parents[1]
# A tiny training budget on a small synthetic pair (~650 entities): a trial is a few seconds.
TINY = ["--set", "train.epochs=4", "train.eval_every=2", 'data.synthetic={"n_latent": 400}']
#: Trials long enough (a few seconds each) that a poller on a loaded machine sees one RUNNING before the worker
#: has finished the whole study: with TINY's 4 epochs a busy CI machine once saw none.
KILLABLE = ["--set", "train.epochs=40", "train.eval_every=10", 'data.synthetic={"n_latent": 400}']


def _model() -> str:
    """The cheapest registered model (``MIMEA_TEST_TUNE_MODEL`` overrides): the mechanics, not the model, are tested."""
    names = registry.available()
    wanted = os.environ.get("MIMEA_TEST_TUNE_MODEL")
    if wanted:
        return wanted
    return next((m for m in ("eva", "msnea", "gcn_align", "mimea") if m in names), names[0])


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _tune_cmd(results: Path, storage: str, study: str, n: int, *more: str) -> list[str]:
    return [sys.executable, "-m", "mimea", "tune", "--model", _model(), "--n-trials", str(n), "--no-progress",
            "--results", str(results), "--storage", storage, "--study-name", study, *more]


def _finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[str]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append(out)
        assert p.returncode == 0, out[-3000:]
    return outs


def _check_finished_study(study: optuna.Study, n: int) -> list:
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(len(trials)))       # each trial recorded once
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == n                                             # exactly n: none lost, none twice
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    run_ids = [t.user_attrs["run_id"] for t in finished]
    assert len(set(run_ids)) == n, "two finished trials trained the same configuration"
    return finished


# -- in-process: space, config, counting ---------------------------------------------------------------------------

def test_search_space_sets_trainer_and_model_fields():
    base = resolve(_model(), "smoke")
    s = suggest(optuna.trial.FixedTrial({"train.lr": 3e-3, "train.weight_decay": 1e-5,
                                          **_model_defaults_as_params(base)}), registry.get(base.model))
    cfg = trial_config(base, s)
    assert cfg.train.lr == 3e-3 and cfg.train.weight_decay == 1e-5
    assert set(s.model) <= set(base.model_config)
    assert cfg.train.epochs == base.train.epochs and cfg.seed == base.seed
    assert tstudy.default_study_name(base) == f"{base.model}-synthetic-r0.2-smoke"


def _model_defaults_as_params(base) -> dict:
    """Params a FixedTrial can answer for the model's space: sample them once from a throwaway study."""
    study = optuna.create_study()
    trial = study.ask()
    registry.get(base.model).search_space(trial)
    return trial.params


def test_default_storage_is_sqlite_under_results(tmp_path):
    url = tstudy.default_storage(tmp_path / "res", "s1")
    assert url == f"sqlite:///{(tmp_path / 'res' / 'tuning' / 's1.db').resolve()}"
    assert (tmp_path / "res" / "tuning").is_dir()


def test_worker_stops_at_exactly_n_and_a_rerun_continues(tmp_path, monkeypatch):
    """The loop counts COMPLETE + PRUNED trials; raising N later continues the same study up to the new N."""
    monkeypatch.setenv(tstudy.HEARTBEAT_ENV, "1")
    base = resolve(_model(), "smoke")
    url = tstudy.default_storage(tmp_path, "count")

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number % 3 == 2:
            trial.report(0.0, step=1)
            raise optuna.TrialPruned()
        if trial.number == 1:
            raise FloatingPointError("diverged")  # a failed trial does not count and does not end the study
        return x

    study = tstudy.open_study("count", url, base)
    assert tstudy.run_worker(study, objective, 4, poll_s=0.01) == 5
    assert tstudy.count(study, FINISHED) == 4 and tstudy.count(study, (TrialState.FAIL,)) == 1
    study = tstudy.open_study("count", url, base)
    tstudy.run_worker(study, objective, 6, poll_s=0.01)
    assert tstudy.count(study, FINISHED) == 6


def test_a_trial_asked_beyond_n_is_closed_before_it_trains(tmp_path):
    """Two workers asking at the same instant: the later trial is surplus and never trains or suggests."""
    study = optuna.create_study(direction="maximize")
    first, second, third = study.ask(), study.ask(), study.ask()
    objective = Objective(resolve(_model(), "smoke"), tmp_path, n_trials=2)
    with pytest.raises(SurplusTrial):
        objective(third)
    assert third.params == {} and third.user_attrs == {"surplus": True}
    assert not (tmp_path / "runs").exists()


def test_a_study_refuses_another_base_config(tmp_path):
    url = tstudy.default_storage(tmp_path, "guard")
    tstudy.open_study("guard", url, resolve(_model(), "smoke"))
    tstudy.open_study("guard", url, resolve(_model(), "smoke", {"train": {"progress": False}}))  # id-neutral
    with pytest.raises(ValueError, match="train.epochs"):
        tstudy.open_study("guard", url, resolve(_model(), "smoke", {"train": {"epochs": 3}}))


def test_bad_heartbeat_setting_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(tstudy.HEARTBEAT_ENV, "soon")
    with pytest.raises(ValueError, match="MIMEA_TUNE_HEARTBEAT"):
        tstudy.heartbeat_settings()


# -- worker processes ----------------------------------------------------------------------------------------------

def test_two_workers_on_one_sqlite_study(tmp_path):
    n = 4
    results = tmp_path / "results"
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = _tune_cmd(results, storage, "two", n, *TINY)
    procs = [subprocess.Popen(cmd + more, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for more in (["--replicate-best", "1"], [])]
    outs = _finish(procs)
    study = optuna.load_study(study_name="two", storage=storage)
    finished = _check_finished_study(study, n)
    workers = {t.user_attrs["worker"].split(":")[-1] for t in finished}
    assert workers <= {str(p.pid) for p in procs}
    assert all("trial" in out for out in outs)

    out = results / "tuning" / "two"
    best = json.loads((out / "best.json").read_text())
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    assert best["value"] == max(t.value for t in complete) and best["n_complete"] == len(complete)
    assert best["model"] == _model() and best["dataset"] == "synthetic" and best["ratio"] == 0.2
    # the objective is the VALIDATION MRR of the stored run (mean of both directions), never a test metric
    stored = RunStore(out).load(best["run_id"])["results"]
    assert best["value"] == pytest.approx(stored["valid"]["mean"]["mrr"])
    assert best["train"]["lr"] == best["params"]["train.lr"]
    rebuilt = config_of_params(resolve(_model(), "smoke"), best["params"]).model_config
    assert json.loads(json.dumps(rebuilt)) == best["model_config"]
    assert len((out / "trials.csv").read_text().strip().splitlines()) == len(study.trials) + 1
    assert (out / "optimization_history.png").stat().st_size > 0
    figures = json.loads((out / "figures.json").read_text())
    assert figures["param_importances"] == "param_importances.png" or len(complete) < 2

    # --replicate-best 1: the best config with a fresh init seed, and the default config, in the normal store
    rep = json.loads((out / "replicate_best.json").read_text())
    assert rep["seeds"] == [1] and rep["best_trial"] == best["trial"]
    replica = RunStore(results).load(rep["runs"][0]["run_id"])["config"]
    assert replica["seed"] == 1 and replica["model_config"] == best["model_config"]
    assert replica["train"]["lr"] == best["train"]["lr"]
    default = RunStore(results).load(rep["default"]["run_id"])
    assert default["config"]["seed"] == 0 and default["config"]["train"]["lr"] != best["train"]["lr"]
    assert rep["default"]["valid_mrr"] == pytest.approx(default["results"]["valid"]["mean"]["mrr"])
    assert 0.0 <= rep["test_l2r"]["mrr"]["mean"] <= 1.0 and "validation MRR: default config" in outs[0]


def _kill_mid_trial(cmd: list[str], env: dict, cwd: Path, storage: str, name: str) -> int:
    """Start a worker, SIGKILL it while a trial is RUNNING; return that trial's number (retries the rare kill that
    lands between two trials)."""
    for _ in range(3):
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 180
        seen = False
        while not seen and time.time() < deadline and proc.poll() is None:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
                # run_id is set inside the objective, i.e. after the trial's heartbeat thread has started
                seen = any("run_id" in t.user_attrs
                           for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            except KeyError:  # the worker has not created the study yet
                pass
            if not seen:
                time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not seen and proc.returncode == 0:
            # the worker finished the whole study between two polls (a loaded machine): start over on a fresh study
            # and an empty run store (the stored runs would make every trial instant)
            optuna.delete_study(study_name=name, storage=storage)
            shutil.rmtree(cmd[cmd.index("--results") + 1], ignore_errors=True)
            continue
        if not seen:
            pytest.fail(f"no RUNNING trial appeared (worker exit status {proc.returncode})")
        running = optuna.load_study(study_name=name, storage=storage).get_trials(states=(TrialState.RUNNING,))
        if running:
            assert len(running) == 1
            return running[0].number
    pytest.fail("three tries in a row: the kill landed between trials, or the study finished before one was seen")


def test_killed_worker_trial_is_failed_and_a_rerun_completes(tmp_path):
    n = 2
    results = tmp_path / "results"
    storage = f"sqlite:///{tmp_path / 'killed.db'}"
    env = _env(MIMEA_TUNE_HEARTBEAT="1", MIMEA_TUNE_GRACE="2")
    cmd = _tune_cmd(results, storage, "killed", n, *KILLABLE)
    killed = _kill_mid_trial(cmd, env, tmp_path, storage, "killed")

    again = subprocess.run(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=240)
    assert again.returncode == 0, again.stdout[-3000:]
    study = optuna.load_study(study_name="killed", storage=storage)
    assert study.trials[killed].state == TrialState.FAIL
    _check_finished_study(study, n)
    # the killed configuration was queued again once (and resumed from its checkpoint)
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].params == study.trials[killed].params
    assert retried[0].state in FINISHED


@pytest.mark.postgres
def test_two_workers_on_one_postgres_study(tmp_path):
    url = os.environ.get("MIMEA_TEST_POSTGRES")
    if not url:
        pytest.skip("MIMEA_TEST_POSTGRES is not set (bash .ci/postgres.sh prints one)")
    pytest.importorskip("psycopg2")
    n = 3
    name = f"pg-{uuid.uuid4().hex[:10]}"
    procs = [subprocess.Popen(_tune_cmd(tmp_path / f"results{i}", url, name, n, *TINY), env=_env(), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    _finish(procs)
    study = optuna.load_study(study_name=name, storage=tstudy.normalize_url(url))
    _check_finished_study(study, n)
    # each machine (here: each results folder) writes the full report of the shared study
    for i in range(2):
        best = json.loads((tmp_path / f"results{i}" / "tuning" / name / "best.json").read_text())
        assert best["value"] == study.best_value and best["n_complete"] + best["n_pruned"] == n
    optuna.delete_study(study_name=name, storage=tstudy.normalize_url(url))


def test_printed_train_command_reproduces_the_measured_configuration():
    """The "train it" line carries the exact floats (a rounded lr would be another run) and the study's non-default
    base settings such as eval.valid_pool."""
    from pathlib import Path

    from mimea.tuning.report import format_best

    best = {"trial": 3, "value": 0.4, "n_complete": 1, "n_pruned": 0, "n_fail": 0, "model": "mimea",
            "dataset": "FBDB15K", "ratio": 0.2, "profile": "cpu",
            "train": {"lr": 0.000368306635512734, "weight_decay": 0.0005829183105120339},
            "config": {"eval": {"similarity": "csls", "valid_pool": "unseen"}, "split": {"ratio": 0.2}}}
    line = format_best(best, Path("out")).splitlines()[-1]
    assert "train.lr=0.000368306635512734" in line and "eval.valid_pool=unseen" in line
    assert "eval.similarity" not in line and "split.ratio" not in line
