"""Issue 14's wrong numbers, each a regression test: a resumed early-stopped run trains on; a run is reused for
other data; a seeded tuning study replays its trials when resumed or extended."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from mimea.models import registry
from mimea.pipeline import run, run_identity
from mimea.store import RunStore
from mimea.training.config import resolve
from mimea.tuning import study as tstudy
from mimea.tuning.objective import FINISHED
from mimea.tuning.space import suggest

SMALL = {"n_latent": 300}


def _cfg(model="gcn_align", **train):
    return resolve(model, "smoke", {"train": {"epochs": 60, "eval_every": 1, "patience": 2, "progress": False,
                                              **train}, "data": {"synthetic": SMALL}})


def test_resume_after_early_stopping_finishes_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """Killed after the early-stopping checkpoint, before results.json: the rerun must not train on."""
    cfg = _cfg()
    ref = run(cfg, tmp_path / "ref")
    assert ref["metadata"]["stopped_by"] == "early_stopping"
    assert ref["metadata"]["epochs_run"] < 60

    def killed(self, *a, **k):   # the process dies while writing the results (after the last checkpoint)
        raise KeyboardInterrupt("killed during the test evaluation")

    monkeypatch.setattr(RunStore, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "killed")
    monkeypatch.undo()
    state = RunStore(tmp_path / "killed").load_checkpoint(ref["run_id"])
    assert state["finished"] == "early_stopping"
    out = run(cfg, tmp_path / "killed")
    assert not out["reused"]
    assert out["metadata"]["epochs_run"] == ref["metadata"]["epochs_run"]
    assert out["metadata"]["stopped_by"] == "early_stopping"
    assert out["results"]["test"] == ref["results"]["test"]
    assert out["results"]["curve"] == [dict(r, time_s=out["results"]["curve"][i]["time_s"])
                                       for i, r in enumerate(ref["results"]["curve"])]
    assert out["metadata"]["resumed"] is True and out["metadata"]["attempts"][-1]["seconds"] == 0.0


def _copy_data(src: tuple[Path, str], dst: Path) -> Path:
    root, name = src
    shutil.copytree(root / name, dst / name)
    return dst


def test_run_id_covers_the_data_content_not_its_path(tmp_path):
    from mimea.data.synthetic import ensure_synthetic

    src = ensure_synthetic(tmp_path / "cache", **SMALL)
    a = _copy_data(src, tmp_path / "a")
    b = _copy_data(src, tmp_path / "b")          # the same content in another folder
    c = _copy_data(src, tmp_path / "c")          # edited: one triple less
    tri = c / src[1] / "norm" / "triples_1"
    tri.write_text("".join(tri.read_text().splitlines(keepends=True)[1:]))

    def cfg(root):
        return resolve("gcn_align", "smoke", {"train": {"epochs": 2, "progress": False},
                                              "data": {"dataset": src[1], "data_dir": str(root)}})

    store = tmp_path / "store"
    assert run_identity(cfg(a), store) == run_identity(cfg(b), store)
    assert run_identity(cfg(a), store) != run_identity(cfg(c), store)
    first = run(cfg(a), store)
    assert run(cfg(b), store)["reused"]
    other = run(cfg(c), store)
    assert not other["reused"] and other["run_id"] != first["run_id"]
    assert first["metadata"]["data"]["fingerprint"] != other["metadata"]["data"]["fingerprint"]
    # edited in place after the run: a new id, never the old numbers
    tri_a = a / src[1] / "norm" / "triples_1"
    tri_a.write_text(tri_a.read_text() + tri_a.read_text().splitlines(keepends=True)[0])
    assert run_identity(cfg(a), store) != first["run_id"]
    # no stored record holds an absolute path of this machine (records are committed and shared)
    stored = json.loads((Path(first["path"]) / "config.json").read_text())
    assert not Path(stored["data"]["data_dir"]).is_absolute()
    for name in ("results.json", "metadata.json"):
        text = (Path(first["path"]) / name).read_text()
        assert str(tmp_path) not in text and str(Path.cwd()) not in text, name


def _suggest_only(model: str):
    cls = registry.get(model)

    def objective(trial):
        suggest(trial, cls)
        return 0.5
    return objective


def _params(study):
    return [tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False, states=FINISHED)]


def test_seeded_study_extended_never_replays_its_trials(tmp_path, monkeypatch):
    monkeypatch.setenv(tstudy.SEED_ENV, "7")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    for n in (2, 4):                 # 2 trials, then extended to 4 by a fresh process-like reopen
        s = optuna.create_study(study_name="s", storage=url, sampler=tstudy.make_sampler(),
                                direction="maximize", load_if_exists=True)
        s.optimize(_suggest_only("gcn_align"), n_trials=n - len(s.trials))
    extended = _params(s)
    assert len(set(extended)) == 4, extended
    once = optuna.create_study(sampler=tstudy.make_sampler(), direction="maximize")
    once.optimize(_suggest_only("gcn_align"), n_trials=4)
    assert _params(once) == extended    # same seed, same sequence, however the study was interrupted


def test_a_repeated_configuration_is_not_counted(tmp_path, monkeypatch):
    """A trial suggesting a finished trial's configuration is closed as FAIL (duplicate_of) before training."""
    from mimea.tuning import objective as tobj
    from mimea.tuning.space import Suggestion

    monkeypatch.setattr(tobj, "suggest", lambda trial, cls: (trial.suggest_float("train.lr", 1e-3, 1e-3),
                                                             Suggestion({"lr": 1e-3}, {}))[1])
    base = _cfg(epochs=2, patience=0)
    study = optuna.create_study(direction="maximize")
    obj = tobj.Objective(base, tmp_path / "runs", n_trials=2)
    with pytest.raises(RuntimeError, match="repeated"):
        tstudy.run_worker(study, obj, 2, poll_s=0.01)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 1
    dups = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert dups and all(t.state == optuna.trial.TrialState.FAIL and t.user_attrs["duplicate_of"] == 0
                        for t in dups)


def test_stored_records_are_found_without_the_data(tmp_path):
    """A fresh clone without the data finds a committed run record by its config (tables render from records)."""
    from mimea.data.synthetic import ensure_synthetic

    src = ensure_synthetic(tmp_path / "cache", **SMALL)
    root = _copy_data(src, tmp_path / "data")
    cfg = resolve("gcn_align", "smoke", {"train": {"epochs": 2, "progress": False},
                                         "data": {"dataset": src[1], "data_dir": str(root)}})
    store = tmp_path / "store"
    done = run(cfg, store)
    shutil.rmtree(root)
    with pytest.raises(FileNotFoundError):
        run_identity(cfg, store)
    assert run_identity(cfg, store, without_data=True) == done["run_id"]
    other = resolve("gcn_align", "smoke", {"train": {"epochs": 3, "progress": False},
                                           "data": {"dataset": src[1], "data_dir": str(root)}})
    assert not RunStore(store).is_finished(run_identity(other, store, without_data=True))
