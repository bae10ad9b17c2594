"""One Optuna trial = one pipeline run of a suggested configuration, scored on VALIDATION MRR.

The value a trial returns is ``valid["mean"]["mrr"]`` (the mean of both directions) of the checkpoint the
trainer selected on validation; test links are never looked at while tuning. After every validation the
trainer calls back here: the value is reported to the pruner (step = epoch) and a hopeless trial is pruned.

Every trial of a study trains with the same init seed, so trials differ only in their configuration. Runs go
to the study's own store (``results/tuning/<study>/runs``); a finished run is reused if a configuration comes
back, and a killed trial's checkpoint resumes when the study retries it.
"""
from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mimea.models import registry
from mimea.pipeline import run, run_identity
from mimea.store import RunStore
from mimea.training.config import RunConfig
from mimea.training.trainer import score_of
from mimea.tuning.space import Suggestion, suggest

#: The objective: validation MRR, mean of both directions.
OBJECTIVE_METRIC = "mrr"
#: Trial states that count towards the requested number of trials (and the one that is still on its way).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class DuplicateTrial(Exception):
    """The suggested configuration is one a finished trial already ran (same run id): closed as FAIL with user
    attr ``duplicate_of`` before training, so it never counts towards the study's N trials."""


class SurplusTrial(Exception):
    """A worker asked for a trial after the study already had N finished or running ones (a race between
    workers); the trial is closed as FAIL with user attr ``surplus`` before it suggests or trains anything."""


def validation_mrr(valid: dict) -> float:
    return score_of(valid, OBJECTIVE_METRIC)


def trial_config(base: RunConfig, suggestion: Suggestion) -> RunConfig:
    """``base`` with the suggested trainer and model fields set (the model Config is validated)."""
    train = dataclasses.replace(base.train, **suggestion.train)
    model_config = {**base.model_config, **suggestion.model}
    cls = registry.get(base.model)
    model_config = dataclasses.asdict(cls.Config(**model_config))
    return dataclasses.replace(base, train=train, model_config=model_config)


def config_of_params(base: RunConfig, params: dict[str, Any]) -> RunConfig:
    """The configuration a stored trial ran, rebuilt from its params (``FixedTrial`` replays the space)."""
    fixed = optuna.trial.FixedTrial(params)
    return trial_config(base, suggest(fixed, registry.get(base.model)))


class Objective:
    """Callable objective for ``study.optimize``.

    base: the resolved base configuration (the one every trial starts from).
    store_root: the study's run store root.
    n_trials: the study's target number of finished trials; a trial asked beyond it is closed as surplus.
    """

    def __init__(self, base: RunConfig, store_root: str | Path, n_trials: int | None = None):
        self.base, self.store_root, self.n_trials = base, Path(store_root), n_trials
        self.model_cls = registry.get(base.model)

    def _check_not_surplus(self, trial: optuna.Trial) -> None:
        if self.n_trials is None:
            return
        counted = FINISHED + (TrialState.RUNNING,)
        earlier = [t for t in trial.study.get_trials(deepcopy=False, states=counted) if t.number < trial.number]
        if len(earlier) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: the study already has {self.n_trials} trials")

    def __call__(self, trial: optuna.Trial) -> float:
        self._check_not_surplus(trial)
        cfg = trial_config(self.base, suggest(trial, self.model_cls))
        rid = run_identity(cfg, self.store_root)
        trial.set_user_attr("run_id", rid)
        for t in trial.study.get_trials(deepcopy=False, states=FINISHED):
            if t.number != trial.number and t.user_attrs.get("run_id") == rid:
                trial.set_user_attr("duplicate_of", t.number)
                raise DuplicateTrial(f"trial {trial.number} repeats trial {t.number}'s configuration")
        trial.set_user_attr("worker", f"{platform.node()}:{os.getpid()}")

        def on_eval(epoch: int, valid: dict) -> None:
            value = validation_mrr(valid)
            trial.report(value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"valid MRR {value:.4f} at epoch {epoch}")

        try:
            out = run(cfg, self.store_root, on_eval=on_eval)   # holds the run's lock (mimea.store.lock)
        except optuna.TrialPruned:
            # a pruned configuration is not resumed: free its checkpoint (weights + optimiser state)
            RunStore(self.store_root).drop_checkpoint(rid)
            raise
        meta = out["metadata"]
        for key in ("epochs_run", "best_epoch", "stopped_by", "train_time_s"):
            if key in meta:
                trial.set_user_attr(key, meta[key])
        trial.set_user_attr("reused", bool(out.get("reused", False)))
        return validation_mrr(out["results"]["valid"])
