"""What one trial suggests: trainer-level parameters here, model parameters from the model's ``search_space``.

Trainer parameters are named ``train.<field>`` in the study so they never collide with a model's own names.
The model's ``search_space(trial)`` (declared beside the model) returns ``{Config field: value}``; every key
must be a field of the model's ``Config``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from mimea.models.base import AlignmentModel

#: Trainer search space (AdamW): log-uniform ranges around the lineage's settings (lr 5e-4..1e-3, wd 1e-4..1e-2).
LR_RANGE = (1e-4, 1e-2)
WEIGHT_DECAY_RANGE = (1e-6, 1e-2)


@dataclass(frozen=True)
class Suggestion:
    """One trial's configuration: ``train`` fields of TrainConfig, ``model`` fields of the model's Config."""

    train: dict[str, Any]
    model: dict[str, Any]


#: Plain gradient descent (GCN-Align's authors: lr 20 on a loss averaged over 2kt terms) lives on another scale.
SGD_LR_RANGE = (1.0, 50.0)


def suggest_train(trial, optimizer: str = "adamw") -> dict[str, Any]:
    """Trainer-level suggestions (TrainConfig field -> value); the lr range follows the model's optimiser."""
    return {
        "lr": trial.suggest_float("train.lr", *(SGD_LR_RANGE if optimizer == "sgd" else LR_RANGE), log=True),
        "weight_decay": trial.suggest_float("train.weight_decay", *WEIGHT_DECAY_RANGE, log=True),
    }


def suggest_model(trial, model_cls: type[AlignmentModel]) -> dict[str, Any]:
    """The model's own suggestions, checked against its Config fields."""
    params = dict(model_cls.search_space(trial) or {})
    known = {f.name for f in fields(model_cls.Config)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise KeyError(f"{model_cls.__name__}.search_space suggests {', '.join(unknown)}, "
                       f"not fields of its Config ({', '.join(sorted(known))})")
    return params


def suggest(trial, model_cls: type[AlignmentModel]) -> Suggestion:
    """Everything one trial sets. Works on a live trial or on ``optuna.trial.FixedTrial(params)`` (to rebuild a
    stored trial's configuration from its params)."""
    optimizer = (getattr(model_cls, "train_defaults", {}) or {}).get("optimizer", "adamw")
    return Suggestion(train=suggest_train(trial, optimizer), model=suggest_model(trial, model_cls))
