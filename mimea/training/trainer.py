"""The shared trainer: an optimiser, an epoch plan and a schedule (parts it composes), validation every k epochs, early stopping, checkpoint and resume.

The trainer owns the loop and nothing else. Data, model, evaluation and storage are handed to it:

* ``validate(model) -> dict``       metrics on the VALIDATION links (never the test links), or None;
* ``monitor(model) -> dict``        optional, its keys merged into the curve's record, recorded only (the authors'
                                    per-epoch test curve; a second validation pool for comparison);
* ``save(state)`` / ``load()``      checkpoint persistence (the run store), so a killed run resumes;
* ``seeder``                        optional iterative-training pseudo-seeder.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from mimea.models.base import AlignmentModel
from mimea.training.config import TrainConfig
from mimea.training.epoch_plan import EpochPlan
from mimea.training.optim import build_optimizer
from mimea.training.schedule import build_schedule
from mimea.training.iterative import PseudoSeeder

Validator = Callable[[AlignmentModel], dict]


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_valid: dict
    history: list[dict]
    epochs_run: int
    stopped_by: str                 # "epochs" | "early_stopping" | "time_budget"
    train_time_s: float
    seeds_added: int = 0
    convergence: dict = field(default_factory=dict)
    attempts: list = field(default_factory=list)   # per process: first/last epoch, seconds, its attempt_info


def score_of(metrics: dict, key: str) -> float:
    """The selection score: ``metrics['mean'][key]`` (mean of both directions)."""
    return float(metrics["mean"][key])


def _convergence(history: list[dict], key: str, stopped_by: str, epochs: int, epochs_run: int) -> dict:
    """How far from converged the run stopped: recent validation trend and the epochs left unused."""
    evals = [h for h in history if "valid" in h]
    out: dict[str, Any] = {"stopped_by": stopped_by, "epochs_configured": epochs, "epochs_run": epochs_run,
                           "share_of_epochs": epochs_run / max(epochs, 1)}
    if len(evals) >= 2:
        last, prev = evals[-1]["valid"][key], evals[-2]["valid"][key]
        best = max(e["valid"][key] for e in evals)
        out.update({"last_valid": last, "best_valid": best, "last_gain": last - prev,
                    "still_improving": bool(stopped_by != "early_stopping" and last >= best - 1e-9)})
    return out


class Trainer:
    """The loop. ``validate`` may be None (no validation links: ``split.val_fraction=0``, the authors' protocol):
    the last epoch's model is then the result (``selection: last_epoch``). ``monitor`` (optional) is evaluated at
    every evaluation epoch and only recorded in the curve (its keys merged into the record, e.g. ``"test"``: the
    authors' per-epoch test curve), never used to select or stop."""

    def __init__(self, model: AlignmentModel, config: TrainConfig, validate: Validator | None, *,
                 select_metric: str = "mrr", seeder: PseudoSeeder | None = None,
                 save: Callable[[dict], None] | None = None, load: Callable[[], dict | None] | None = None,
                 on_eval: Callable[[int, dict], None] | None = None, monitor: Validator | None = None,
                 desc: str = "train", attempt_info: dict | None = None):
        self.model, self.cfg, self.validate, self.monitor = model, config, validate, monitor
        self.attempt_info = dict(attempt_info or {})   # recorded with this process's attempt (e.g. its commit)
        self.select_metric = select_metric
        self.seeder, self.save, self.load, self.on_eval, self.desc = seeder, save, load, on_eval, desc
        self.optimizer = build_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay)
        self.plan = EpochPlan(config.batch_size, config.accumulate,
                              model.steps_per_epoch(0, max(1, config.batch_size)))

    def train_epoch(self, train_links: torch.Tensor, gen: torch.Generator,
                    schedule: Any = None) -> tuple[dict[str, float], int]:
        """One epoch of the plan's optimiser steps; returns the summed logs and the number of steps."""
        model, cfg = self.model, self.cfg
        model.train()
        logs_sum: dict[str, float] = {}
        n_steps = 0
        for step in self.plan.steps(train_links, gen):
            loss, logs = model.summed_loss(step)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            if schedule is not None:
                schedule.step()
            for k, v in {"loss": float(loss.detach()), **logs}.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v)
            n_steps += 1
        return logs_sum, n_steps

    def _new_attempt(self, start_epoch: int) -> dict:
        """This process's entry of ``attempts``: nothing trained yet, plus ``attempt_info``."""
        return {"first_epoch": start_epoch, "last_epoch": start_epoch - 1, "seconds": 0.0, **self.attempt_info}

    def fit(self, train_links: torch.Tensor) -> TrainResult:
        cfg, model = self.cfg, self.model
        gen = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        start_epoch, history, best_score, best_epoch, bad = 1, [], -math.inf, 0, 0
        best_state = _snapshot(model)
        best_valid: dict = {}
        elapsed_before = 0.0
        il_lr_applied = False
        attempts: list[dict] = []
        total_steps = (cfg.schedule_epochs or cfg.epochs) * self.plan.optimizer_steps(len(train_links))
        schedule = build_schedule(self.optimizer, cfg.schedule, total_steps, cfg.warmup)

        state = self.load() if self.load else None
        if state is not None:  # resume exactly where the last checkpoint left off
            model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if schedule is not None and state.get("schedule") is not None:
                schedule.load_state_dict(state["schedule"])
            start_epoch = int(state["epoch"]) + 1
            history = state["history"]
            best_score, best_epoch, bad = float(state["best_score"]), int(state["best_epoch"]), int(state["bad"])
            best_state, best_valid = state["best_state"], state["best_valid"]
            train_links = state["train_links"].to(train_links.device)
            elapsed_before = float(state["elapsed"])
            attempts = list(state.get("attempts") or [])
            il_lr_applied = bool(state.get("il_lr_applied", False))
            torch.set_rng_state(state["rng"])
            gen.set_state(state["gen"])
            if self.seeder is not None and state.get("seeder") is not None:
                self.seeder.load_state_dict(state["seeder"])
            if state.get("finished"):
                # Training had ended (early stopping, last epoch, budget) before the run was killed: finish
                # exactly as the uninterrupted run did, without one more step.
                attempts.append(self._new_attempt(start_epoch))
                return self._result(best_state, best_epoch, best_valid, history, int(state["epoch"]),
                                    str(state["finished"]), elapsed_before, attempts)

        t0 = time.perf_counter() - elapsed_before
        attempt = self._new_attempt(start_epoch)
        attempts.append(attempt)
        t_attempt = time.perf_counter()
        stopped_by = "epochs"
        epoch = start_epoch - 1
        n_evals = len([h for h in history if "valid" in h or "test" in h])
        bar = _progress(cfg, start_epoch, self.desc)
        for epoch in range(start_epoch, cfg.epochs + 1):
            logs_sum, n_steps = self.train_epoch(train_links, gen, schedule)
            record: dict[str, Any] = {"epoch": epoch, **{k: v / max(n_steps, 1) for k, v in logs_sum.items()}}
            record["lr"] = float(self.optimizer.param_groups[0]["lr"])
            if not math.isfinite(record.get("loss", 0.0)):
                raise FloatingPointError(f"{self.desc}: loss is {record['loss']} at epoch {epoch}")

            if self.seeder is not None and cfg.iterative:
                if epoch >= self.seeder.start and not il_lr_applied:
                    for group in self.optimizer.param_groups:
                        group["lr"] /= cfg.il_lr_divisor
                    il_lr_applied = True
                train_links = self.seeder.step(epoch, model, train_links)
                record["n_seeds"] = len(train_links)

            elapsed = time.perf_counter() - t0
            over_budget = cfg.time_budget_s is not None and elapsed > cfg.time_budget_s
            last = epoch == cfg.epochs or over_budget
            finished = None
            if epoch % cfg.eval_every == 0 or last:
                n_evals += 1
                if self.monitor is not None:
                    record.update(self.monitor(model))
                if self.validate is not None:
                    valid = self.validate(model)
                    record["valid"] = valid["mean"]
                    score = score_of(valid, self.select_metric)
                    if score > best_score:
                        best_score, best_epoch, bad, best_valid = score, epoch, 0, valid
                        best_state = _snapshot(model)
                    else:
                        bad += 1
                    if self.on_eval:
                        self.on_eval(epoch, valid)
                    if cfg.patience and bad >= cfg.patience:
                        stopped_by = "early_stopping"
                if over_budget and stopped_by != "early_stopping":
                    stopped_by = "time_budget"
                if last or stopped_by != "epochs":
                    finished = stopped_by
                if self.validate is None and finished:   # no validation: the last epoch's model is the result
                    best_state, best_epoch = _snapshot(model), epoch
                record["time_s"] = time.perf_counter() - t0
                history.append(record)
                record = None
                attempt.update(last_epoch=epoch, seconds=time.perf_counter() - t_attempt)
                every = max(1, cfg.checkpoint_every or 1)
                if self.save is not None and (finished or n_evals % every == 0):
                    self.save({
                        "model": model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                        "schedule": schedule.state_dict() if schedule is not None else None,
                        "history": history, "best_score": best_score, "best_epoch": best_epoch, "bad": bad,
                        "best_state": best_state, "best_valid": best_valid, "train_links": train_links.cpu(),
                        "elapsed": time.perf_counter() - t0, "rng": torch.get_rng_state(),
                        "gen": gen.get_state(), "il_lr_applied": il_lr_applied,
                        "seeder": self.seeder.state_dict() if self.seeder is not None else None,
                        "finished": finished, "attempts": attempts,
                    })
            if record is not None:
                record["time_s"] = time.perf_counter() - t0
                history.append(record)
            if bar is not None:
                bar.update(1)
                post = {"loss": f"{history[-1].get('loss', float('nan')):.4f}"}
                if best_valid:
                    post[f"val_{self.select_metric}"] = f"{best_score:.4f}"
                bar.set_postfix(post)
            if finished:
                break
        if bar is not None:
            bar.close()
        attempt.update(last_epoch=epoch, seconds=time.perf_counter() - t_attempt)
        return self._result(best_state, best_epoch, best_valid, history, epoch, stopped_by,
                            time.perf_counter() - t0, attempts)

    def _result(self, best_state, best_epoch, best_valid, history, epochs_run, stopped_by, train_time,
                attempts) -> TrainResult:
        conv = _convergence(history, self.select_metric, stopped_by, self.cfg.epochs, epochs_run)
        conv["selection"] = "validation" if self.validate is not None else "last_epoch"
        return TrainResult(best_state=best_state, best_epoch=best_epoch, best_valid=best_valid, history=history,
                           epochs_run=epochs_run, stopped_by=stopped_by, train_time_s=train_time,
                           seeds_added=self.seeder.added if self.seeder else 0, convergence=conv,
                           attempts=attempts)


def _snapshot(model: torch.nn.Module) -> dict:
    """A detached copy of the model's state (tensors cloned; extra state, e.g. PyG's, deep-copied)."""
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def _progress(cfg: TrainConfig, start: int, desc: str):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.epochs, initial=start - 1, desc=desc, unit="ep", dynamic_ncols=True, leave=False)
