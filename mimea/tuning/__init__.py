"""Optuna tuning studies on validation MRR: resumable, pruned, several workers on one study.

* :mod:`mimea.tuning.space`     what a trial suggests (trainer params here; model params from the model's own
                                ``search_space``);
* :mod:`mimea.tuning.objective` one trial = one pipeline run, reported to the pruner after every validation;
* :mod:`mimea.tuning.study`     storage (SQLite by default, PostgreSQL for several machines), the worker loop
                                that stops at exactly N finished trials, ``mimea tune``;
* :mod:`mimea.tuning.report`    trials.csv, best.json, figures, replicates of the best configuration.
"""
from mimea.tuning.objective import Objective, trial_config
from mimea.tuning.space import Suggestion, suggest
from mimea.tuning.study import default_storage, default_study_name, open_study, tune

__all__ = ["Objective", "Suggestion", "default_storage", "default_study_name", "open_study", "suggest",
           "trial_config", "tune"]
