"""The shared trainer: AdamW, validation every k epochs, early stopping, checkpoint and resume.

The trainer owns the loop and nothing else. Data, model, evaluation and storage are handed to it:

* ``validate(model) -> dict``       metrics on the VALIDATION links (never the test links);
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
    def __init__(self, model: AlignmentModel, config: TrainConfig, validate: Validator, *,
                 select_metric: str = "mrr", seeder: PseudoSeeder | None = None,
                 save: Callable[[dict], None] | None = None, load: Callable[[], dict | None] | None = None,
                 on_eval: Callable[[int, dict], None] | None = None, desc: str = "train"):
        self.model, self.cfg, self.validate = model, config, validate
        self.select_metric = select_metric
        self.seeder, self.save, self.load, self.on_eval, self.desc = seeder, save, load, on_eval, desc
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def _batches(self, links: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        """One epoch's link batches: a shuffled pass over the links, or, when the model says its epoch is
        ``steps_per_epoch`` steps (MSNEA: a pass over the triples), that many batches from repeated passes."""
        bs = max(1, self.cfg.batch_size)
        want = self.model.steps_per_epoch(len(links), bs)
        out: list[torch.Tensor] = []
        while True:
            perm = torch.randperm(len(links), generator=gen).to(links.device)
            out += [links[perm[i:i + bs]] for i in range(0, len(links), bs)]
            if want is None or len(out) >= want:
                return out if want is None else out[:want]

    def fit(self, train_links: torch.Tensor) -> TrainResult:
        cfg, model = self.cfg, self.model
        gen = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        start_epoch, history, best_score, best_epoch, bad = 1, [], -math.inf, 0, 0
        best_state = _snapshot(model)
        best_valid: dict = {}
        elapsed_before = 0.0
        il_lr_applied = False

        state = self.load() if self.load else None
        if state is not None:  # resume exactly where the last checkpoint left off
            model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            start_epoch = int(state["epoch"]) + 1
            history = state["history"]
            best_score, best_epoch, bad = float(state["best_score"]), int(state["best_epoch"]), int(state["bad"])
            best_state, best_valid = state["best_state"], state["best_valid"]
            train_links = state["train_links"].to(train_links.device)
            elapsed_before = float(state["elapsed"])
            il_lr_applied = bool(state.get("il_lr_applied", False))
            torch.set_rng_state(state["rng"])
            gen.set_state(state["gen"])
            if self.seeder is not None and state.get("seeder") is not None:
                self.seeder.load_state_dict(state["seeder"])

        t0 = time.perf_counter() - elapsed_before
        stopped_by = "epochs"
        epoch = start_epoch - 1
        bar = _progress(cfg, start_epoch, self.desc)
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            logs_sum: dict[str, float] = {}
            n_batches = 0
            for batch in self._batches(train_links, gen):
                loss, logs = model.batch_loss(batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                for k, v in {"loss": float(loss.detach()), **logs}.items():
                    logs_sum[k] = logs_sum.get(k, 0.0) + float(v)
                n_batches += 1
            record: dict[str, Any] = {"epoch": epoch, **{k: v / max(n_batches, 1) for k, v in logs_sum.items()}}
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
            if epoch % cfg.eval_every == 0 or last:
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
                if self.save is not None:
                    record["time_s"] = time.perf_counter() - t0
                    history.append(record)
                    self.save({
                        "model": model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                        "history": history, "best_score": best_score, "best_epoch": best_epoch, "bad": bad,
                        "best_state": best_state, "best_valid": best_valid, "train_links": train_links.cpu(),
                        "elapsed": time.perf_counter() - t0, "rng": torch.get_rng_state(),
                        "gen": gen.get_state(), "il_lr_applied": il_lr_applied,
                        "seeder": self.seeder.state_dict() if self.seeder is not None else None,
                    })
                    record = None
            if record is not None:
                record["time_s"] = time.perf_counter() - t0
                history.append(record)
            if bar is not None:
                bar.update(1)
                post = {"loss": f"{history[-1].get('loss', float('nan')):.4f}"}
                if best_valid:
                    post[f"val_{self.select_metric}"] = f"{best_score:.4f}"
                bar.set_postfix(post)
            if stopped_by == "early_stopping":
                break
            if over_budget:
                stopped_by = "time_budget"
                break
        if bar is not None:
            bar.close()
        train_time = time.perf_counter() - t0
        return TrainResult(best_state=best_state, best_epoch=best_epoch, best_valid=best_valid, history=history,
                           epochs_run=epoch, stopped_by=stopped_by, train_time_s=train_time,
                           seeds_added=self.seeder.added if self.seeder else 0,
                           convergence=_convergence(history, self.select_metric, stopped_by, cfg.epochs, epoch))


def _snapshot(model: torch.nn.Module) -> dict:
    """A detached copy of the model's state (tensors cloned; extra state, e.g. PyG's, deep-copied)."""
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def _progress(cfg: TrainConfig, start: int, desc: str):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.epochs, initial=start - 1, desc=desc, unit="ep", dynamic_ncols=True, leave=False)
