"""One typed config tree for a run (LibKGE-style), and the run profiles.

Resolution order, lowest to highest, and nothing else ever rewrites a value:

1. the dataclass defaults below;
2. the model's ``train_defaults`` (its authors' script settings: lr, batch, epochs...);
3. the profile (``smoke``, ``cpu``, ``paper``, ``authors``): the dataset, epochs and protocol it runs under
   (``docs/baselines.md`` says what differs between ``paper`` and ``authors``);
4. the model's ``profile_defaults[profile]``: what that profile sets for this model only, as a nested override of
   the tree (``{"train": {...}, "model_config": {...}}``): the ``cpu`` profile's epoch count, measured per model
   so that a run on FBDB15K takes about 4 minutes on one CPU core; the ``smoke`` profile's narrower widths;
5. what the user sets explicitly (CLI flags, a config file, a tuned configuration).

No profile sets a time budget: a budget makes the epochs reached, hence the numbers, depend on machine load
(same seed, same numbers). ``train.time_budget_s`` stays available to set by hand; a run that hits it says so.

The fully resolved tree is saved with every run, and its hash is the run id.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from mimea.training.validate import check_value


@dataclass
class DataConfig:
    dataset: str = "synthetic"          # "synthetic" (embedded default) | FBDB15K | FBYG15K | any folder name
    data_dir: str | None = None         # ROOT holding NAME/norm/...; None: synthetic cache or $MIMEA_DATA_DIR
    use_names: bool = False             # names are off in every benchmark of the lineage
    missing_image: str = "mask"         # "mask" (weight 0, MIMEA default) | "random" (MEAformer mean/std fill)
    top_k_features: int = 1000          # bag of the top-k relations / attribute names
    synthetic: dict = field(default_factory=dict)   # generator keyword arguments (size, seed, rates...)


@dataclass
class SplitConfig:
    ratio: float = 0.2                  # share of links used as seeds (train + validation)
    mode: str = "lineage"               # "lineage": np.random.seed(42) shuffle (MCLEA/MEAformer test links)
                                        # "seeded": numpy Generator(split_seed) permutation
    split_seed: int = 42
    val_fraction: float = 0.1           # of the seed links, carved off for model selection / early stopping


@dataclass
class TrainConfig:
    epochs: int = 500
    lr: float = 5e-4
    weight_decay: float = 1e-4
    batch_size: int = 3500              # seed links per optimisation step
    eval_every: int = 10                # epochs between validation evaluations
    patience: int = 10                  # evaluations without validation improvement before stopping; 0 = never
    select_metric: str = "mrr"          # validation metric for model selection / early stopping
    time_budget_s: float | None = None  # stop (and record it) when the wall time passes this
    grad_clip: float | None = None
    optimizer: str = "adamw"            # adamw | adam | sgd | adagrad (mimea/training/optim.py)
    schedule: str = "constant"          # constant | cosine_warmup | linear_warmup (mimea/training/schedule.py)
    warmup: float = 0.0                 # share of all optimiser steps spent warming up (warm-up schedules)
    schedule_epochs: int | None = None  # the schedule's horizon in epochs (None: train.epochs); a run cut short
                                        # of a longer schedule (the fidelity benchmark's 12 of MEAformer's 500)
    accumulate: str = "none"            # "none": a step per batch | "epoch": one summed step per epoch
    iterative: bool = False             # iterative (bootstrapped) training: mutual-NN pseudo-seeds
    il_start: int = 500                 # epoch where iterative training starts
    il_every: int = 5                   # epochs between mutual-NN collections
    il_commit_every: int = 50           # epochs between adding pairs that stayed mutual-NN
    il_lr_divisor: float = 5.0          # lr /= this when iterative training starts (lineage)
    device: str = "auto"                # "auto" picks cuda when present; never hard-coded
    threads: int | None = None          # torch.set_num_threads; None leaves torch's default
    checkpoint_every: int = 0           # evaluations between checkpoints (0 = at every evaluation)
    progress: bool = True


@dataclass
class EvalConfig:
    similarity: str = "csls"            # "cosine" | "csls"
    valid_pool: str = "valid"           # candidates of validation: "valid" (the validation links' own entities,
                                        # ~270 at FB 20 %) | "unseen" (every entity not in a training link,
                                        # test-sized; see mimea/evaluation/pool.py for why)
    test_curve: bool = False            # evaluate the TEST links at every evaluation, recorded in the curve only
                                        # (the authors' protocol; the ``authors`` profile): never selects or stops
    valid_pool_compare: str | None = None   # a second validation pool ("valid" | "unseen") scored at every
                                        # evaluation and recorded in the curve as ``valid_<pool>``: never selects
                                        # or stops (which pool ranks checkpoints like the test does:
                                        # benchmarks/valid_pool_study.py)
    csls_k: int = 3
    chunk_size: int = 4096
    export_predictions: bool = False    # per-pair predictions (ids, names, rank, top-k) in the run folder
    top_k_export: int = 10


@dataclass
class RunConfig:
    model: str = "gcn_align"
    model_config: dict = field(default_factory=dict)   # the model's own Config fields, fully resolved
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0                       # initialisation seed (separate from the split seed)
    profile: str = "smoke"
    #: The model's code revision (its class's ``REVISION``; set by :func:`resolve`, not a setting). A change
    #: that alters what a model computes bumps it, so that runs of the earlier code get other ids and are never
    #: reused, resumed or tabulated as if the new code had made them. 0 stays out of the id (earlier runs).
    revision: int = 0


#: Profiles: what each sets. ``model_train_defaults`` says whether the model's own
#: authors' settings apply (paper) or are capped for speed (smoke, cpu).
PROFILES: dict[str, dict[str, Any]] = {
    # Synthetic data, seconds: for tests and `nox -s reproduce` on the embedded default.
    "smoke": {
        # No time budget: a budget would make the numbers depend on machine load (same seed, same numbers).
        "train": {"epochs": 20, "eval_every": 4, "patience": 3, "time_budget_s": None, "batch_size": 512},
    },
    # Real data on a 2-core CPU: a fixed number of epochs per model (its ``profile_defaults["cpu"]``), about 4
    # minutes a run on one core; the run records how far from converged it stopped. 100 epochs if a model sets none.
    "cpu": {
        "train": {"epochs": 100, "eval_every": 10, "patience": 5, "time_budget_s": None},
    },
    # The authors' settings AND loop semantics (the model's train_defaults: epochs, optimiser, schedule, epoch
    # plan) under OUR protocol: validation links carved from the seeds, the checkpoint selected on validation.
    # No early stopping: no author stops early.
    "paper": {
        "train": {"time_budget_s": None, "patience": 0},
    },
    # The authors' protocol too, nothing of ours: every seed link trains (no validation carve-out), the last
    # epoch's model is the result, the test links are evaluated during training (recorded as the curve, as their
    # scripts print it). For side-by-side runs against their code (benchmarks/fidelity); every cell it produces
    # says "authors' protocol".
    "authors": {
        "train": {"time_budget_s": None, "patience": 0},
        "split": {"val_fraction": 0.0},
        "eval": {"test_curve": True},
    },
}


def _merge(dc, overrides: dict[str, Any], where: str):
    """Return a copy of dataclass ``dc`` with ``overrides`` applied (nested), rejecting unknown keys."""
    names = {f.name: f for f in fields(dc)}
    kw = {}
    for key, value in overrides.items():
        if key not in names:
            raise KeyError(f"unknown config key {where}{key!r}; known: {', '.join(sorted(names))}")
        cur = getattr(dc, key)
        if is_dataclass(cur) and isinstance(value, dict):
            kw[key] = _merge(cur, value, f"{where}{key}.")
        elif isinstance(cur, dict) and isinstance(value, dict):
            kw[key] = {**cur, **value}
        else:
            check_value(type(dc), key, value, where)  # before the dataclass's own __post_init__ checks
            kw[key] = value
    return dataclasses.replace(dc, **kw)


def resolve(model: str, profile: str = "smoke", overrides: dict[str, Any] | None = None,
            model_overrides: dict[str, Any] | None = None) -> RunConfig:
    """The fully resolved RunConfig for ``model`` under ``profile`` with explicit ``overrides``.

    ``overrides`` is a nested dict over RunConfig (e.g. ``{"split": {"ratio": 0.5}, "seed": 1}``);
    ``model_overrides`` sets fields of the model's own Config.
    """
    from mimea.models import registry  # models sit below training in the data flow

    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if overrides and "revision" in overrides:
        raise KeyError("config key 'revision' is the model's code revision (its class's REVISION), not a setting")
    cls = registry.get(model)
    cfg = RunConfig(model=model, profile=profile)
    train_defaults = dict(getattr(cls, "train_defaults", {}) or {})
    if profile in ("smoke", "cpu"):
        # The capped profiles keep the model's optimiser settings but not its epoch count / batch.
        train_defaults.pop("epochs", None)
        if profile == "smoke":
            train_defaults.pop("batch_size", None)
    if train_defaults:
        cfg = _merge(cfg, {"train": train_defaults}, "")
    cfg = _merge(cfg, PROFILES[profile], "")
    per_model = dict((getattr(cls, "profile_defaults", {}) or {}).get(profile, {}))
    profile_model = dict(per_model.pop("model_config", {}) or {})
    if per_model:
        cfg = _merge(cfg, per_model, "")
    if profile == "smoke":
        cfg = _merge(cfg, {"data": {"dataset": "synthetic"}}, "")
    if overrides:
        cfg = _merge(cfg, overrides, "")
    mc = cls.Config()
    if profile_model:
        mc = _merge(mc, profile_model, "model_config.")
    if model_overrides:
        mc = _merge(mc, model_overrides, "model_config.")
    cfg = dataclasses.replace(cfg, model_config=dataclasses.asdict(mc), revision=int(getattr(cls, "REVISION", 0)))
    from mimea.training.validate import check_config

    check_config(cfg)  # types and values of the whole tree: one-line ConfigError
    return cfg


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Inverse of :func:`to_dict` (used to reload a stored run's config)."""
    return RunConfig(
        model=d["model"], model_config=dict(d.get("model_config", {})),
        data=DataConfig(**d.get("data", {})), split=SplitConfig(**d.get("split", {})),
        train=TrainConfig(**d.get("train", {})), eval=EvalConfig(**d.get("eval", {})),
        seed=d.get("seed", 0), profile=d.get("profile", "smoke"), revision=d.get("revision", 0),
    )


def model_config(cfg: RunConfig):
    """The model's typed Config built from ``cfg.model_config``."""
    from mimea.models import registry

    cls = registry.get(cfg.model)
    return cls.Config(**cfg.model_config)
