"""What a study leaves in its output folder, and the replicates of its best configuration.

* ``trials.csv``                  ``study.trials_dataframe()`` (every trial, its state, params and user attrs);
* ``best.json``                   the best trial: validation MRR, model Config, tuned trainer fields, counts;
* ``best_model_config.json``      just the model Config fields (``mimea train --config`` takes this file);
* ``optimization_history.png``,   Optuna's matplotlib plots; ``param_importances.png`` needs two complete
  ``intermediate_values.png``,    trials and is skipped (with the reason in ``figures.json``) before that;
  ``param_importances.png``
* ``replicate_best.json``         with ``--replicate-best R``: the best configuration retrained with R fresh init
                                  seeds in the normal run store, and the default configuration's validation MRR.

Every file is written atomically, so several workers finishing one study may all write it.
"""
from __future__ import annotations

import io
import logging
import math
import statistics
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mimea.pipeline import run, with_seed
from mimea.store import atomic_write_json, atomic_write_text
from mimea.store.atomic import atomic_write_bytes
from mimea.store.runs import portable_config
from mimea.training.config import RunConfig, to_dict
from mimea.tuning.objective import config_of_params, validation_mrr

log = logging.getLogger(__name__)

FIGURES = ("optimization_history", "intermediate_values", "param_importances")
REPORTED = ("hits@1", "hits@10", "mrr")


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, plus ``surplus`` (FAIL trials closed before training) and ``total``."""
    trials = study.get_trials(deepcopy=False)
    out = {f"n_{s.name.lower()}": sum(t.state == s for t in trials) for s in TrialState}
    out["n_surplus"] = sum(bool(t.user_attrs.get("surplus")) for t in trials)
    out["n_trials"] = len(trials)
    return out


def write_trials_csv(study: optuna.Study, out: Path) -> Path:
    frame = study.trials_dataframe()
    path = out / "trials.csv"
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def _save_axes(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(7, 4.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_figures(study: optuna.Study, out: Path) -> dict[str, str]:
    """Write the PNG figures; returns name -> file name, or the reason it was skipped."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    target = "validation MRR"
    plots = {"optimization_history": partial(ovm.plot_optimization_history, target_name=target),
             "intermediate_values": ovm.plot_intermediate_values,
             "param_importances": partial(ovm.plot_param_importances, target_name=target)}
    done: dict[str, str] = {}
    for name in FIGURES:
        if name == "param_importances" and n_complete < 2:
            done[name] = f"skipped: needs 2 complete trials, the study has {n_complete}"
            continue
        if name == "intermediate_values" and not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            done[name] = "skipped: no trial reported a validation yet"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning of optuna.visualization.matplotlib
                ax = plots[name](study)
            _save_axes(ax, out / f"{name}.png")
            done[name] = f"{name}.png"
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of a constant objective
            done[name] = f"skipped: {exc}"
            log.warning("figure %s skipped: %s", name, exc)
    atomic_write_json(out / "figures.json", done)
    return done


def best_summary(study: optuna.Study, base: RunConfig) -> dict[str, Any] | None:
    """The best.json dict, or None while no trial is complete."""
    c = counts(study)
    if c["n_complete"] == 0:
        return None
    best = study.best_trial
    cfg = config_of_params(base, best.params)
    tuned_train = {k.split(".", 1)[1]: v for k, v in best.params.items() if k.startswith("train.")}
    return {
        "study": study.study_name, "model": base.model, "dataset": base.data.dataset, "ratio": base.split.ratio,
        "profile": base.profile, "value": best.value, "metric": "valid.mean.mrr", "trial": best.number,
        "params": best.params, "model_config": cfg.model_config,
        "train": {k: getattr(cfg.train, k) for k in tuned_train},
        "run_id": best.user_attrs.get("run_id"), "seed": base.seed, **c,
        "config": portable_config(to_dict(cfg)),   # no absolute data path in a shared report
    }


def write_report(study: optuna.Study, base: RunConfig, out: str | Path) -> dict[str, Any] | None:
    """trials.csv, figures and (once a trial is complete) best.json + best_model_config.json in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_trials_csv(study, out)
    write_figures(study, out)
    best = best_summary(study, base)
    if best is not None:
        atomic_write_json(out / "best_model_config.json", best["model_config"])
        atomic_write_json(out / "best.json", best)
    return best


def format_best(best: dict[str, Any], out: Path) -> str:
    sets = " ".join(f"train.{k}={v!r}" if isinstance(v, float) else f"train.{k}={v}"   # exact: reruns reuse the run
                    for k, v in best["train"].items())
    # the study's own base settings that differ from the defaults (e.g. eval.valid_pool), so the command
    # trains the very configuration the study measured
    from mimea.training.config import EvalConfig, SplitConfig

    for section, defaults in (("eval", EvalConfig()), ("split", SplitConfig())):
        for k, v in (best.get("config", {}).get(section) or {}).items():
            if k != "ratio" and hasattr(defaults, k) and getattr(defaults, k) != v:
                sets += f" {section}.{k}={v!r}" if isinstance(v, float) else f" {section}.{k}={v}"
    data = "" if best["dataset"] == "synthetic" else " --data-dir ROOT"
    return (f"best: trial {best['trial']}, valid MRR {best['value']:.4f} "
            f"({best['n_complete']} complete, {best['n_pruned']} pruned, {best['n_fail']} failed)\n"
            f"report: {out}/ (trials.csv, best.json, figures)\n"
            f"train it: mimea train --model {best['model']} --dataset {best['dataset']}{data} "
            f"--ratio {best['ratio']:g} --profile {best['profile']} --config {out / 'best_model_config.json'} "
            f"--set {sets}")


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _locked_run(cfg: RunConfig, store_root: str | Path) -> dict[str, Any]:
    return run(cfg, store_root)   # mimea.pipeline.run holds the run's lock


def replicate_best(study: optuna.Study, base: RunConfig, replicates: int, results: str | Path,
                   out: str | Path) -> dict[str, Any]:
    """Retrain the best configuration with ``replicates`` fresh init seeds (base.seed+1, ...) in the normal run
    store, train the default (untuned) configuration once at the study's seed, write replicate_best.json."""
    best = study.best_trial
    cfg = config_of_params(base, best.params)
    seeds = [base.seed + 1 + i for i in range(replicates)]
    runs = []
    for seed in seeds:
        o = _locked_run(with_seed(cfg, seed), results)
        runs.append({"run_id": o["run_id"], "seed": seed, "test": o["results"]["test"],
                     "valid_mrr": validation_mrr(o["results"]["valid"])})
    default = _locked_run(base, results)
    summary: dict[str, Any] = {
        "study": study.study_name, "model": base.model, "dataset": base.data.dataset, "ratio": base.split.ratio,
        "profile": base.profile, "similarity": base.eval.similarity, "best_trial": best.number,
        "best_trial_valid_mrr": best.value, "seeds": seeds, "runs": runs,
        "valid_mrr": _mean_std([r["valid_mrr"] for r in runs]),
        "default": {"run_id": default["run_id"], "seed": base.seed,
                    "valid_mrr": validation_mrr(default["results"]["valid"]),
                    "test": default["results"]["test"]},
        "model_config": cfg.model_config, "train": {"lr": cfg.train.lr, "weight_decay": cfg.train.weight_decay},
    }
    for direction in ("l2r", "r2l", "mean"):
        summary[f"test_{direction}"] = {m: _mean_std([r["test"][direction][m] for r in runs]) for m in REPORTED}
    atomic_write_json(Path(out) / "replicate_best.json", summary)
    return summary


def format_replicates(s: dict[str, Any]) -> str:
    def ms(d: dict[str, float]) -> str:
        return f"{d['mean']:.4f} ± {d['std']:.4f}" if math.isfinite(d["std"]) else f"{d['mean']:.4f}"

    t = s["test_l2r"]
    return (f"best config, {len(s['runs'])} run(s) with fresh init seeds {s['seeds']} "
            f"(test, left-to-right, {s['similarity']}):\n"
            f"  H@1 {ms(t['hits@1'])}   H@10 {ms(t['hits@10'])}   MRR {ms(t['mrr'])}\n"
            f"validation MRR: default config {s['default']['valid_mrr']:.4f} (seed {s['default']['seed']}) | "
            f"tuned {s['best_trial_valid_mrr']:.4f} (trial {s['best_trial']}, seed {s['default']['seed']}) | "
            f"tuned, fresh seeds {ms(s['valid_mrr'])}")
