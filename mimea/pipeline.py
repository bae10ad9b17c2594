"""One entry that runs an experiment end to end (PyKEEN's ``pipeline()``): config in, stored run out.

data -> split -> model -> trainer (validation for selection) -> test evaluation -> run store.
A run whose ``results.json`` exists is returned as stored, never recomputed; a run with a checkpoint resumes.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from mimea.data.pair import MMKGPair
from mimea.models import registry
from mimea.store import RunStore, run_id
from mimea.store.damage import record_failure, set_aside_damaged
from mimea.store.lock import run_lock
from mimea.store.metadata import environment, git_commit, peak_rss_mb
from mimea.training.allocator import keep_freed_memory
from mimea.training.config import DataConfig, RunConfig, model_config, to_dict
from mimea.training.iterative import PseudoSeeder
from mimea.training.seeding import resolve_device, seed_everything, set_threads
from mimea.training.trainer import Trainer

log = logging.getLogger(__name__)

DATA_ENV = "MIMEA_DATA_DIR"


def data_location(data: DataConfig, cache_root: str | Path) -> tuple[Path, str]:
    """(ROOT, NAME) of the dataset a config names: the synthetic cache, ``data_dir`` or ``$MIMEA_DATA_DIR``."""
    if data.dataset == "synthetic" and not data.data_dir:
        from mimea.data.synthetic import ensure_synthetic

        return ensure_synthetic(Path(cache_root), **data.synthetic)
    root = data.data_dir or os.environ.get(DATA_ENV)
    if not root:
        raise FileNotFoundError(f"dataset {data.dataset!r} needs --data-dir or ${DATA_ENV} "
                                f"(the folder holding {data.dataset}/norm/)")
    return Path(root), data.dataset


@lru_cache(maxsize=4)
def _load_cached(root: str, name: str, use_names: bool, missing_image: str, top_k: int) -> MMKGPair:
    from mimea.data.loader import load_pair

    return load_pair(root, name, use_names=use_names, missing_image=missing_image, top_k=top_k)


def data_fingerprint(data: DataConfig, store_root: str | Path = "results") -> str:
    """The content fingerprint of the data a config reads (:mod:`mimea.data.fingerprint`), cached in the store."""
    from mimea.data.fingerprint import fingerprint

    root, name = data_location(data, Path(store_root) / "data")
    return fingerprint(root, name, cache=Path(store_root) / ".cache" / "fingerprints.json")


def run_identity(cfg: RunConfig, store_root: str | Path = "results", *, without_data: bool = False) -> str:
    """The run id of ``cfg``: its resolved config and the content of the data it reads (not the data's path).

    ``without_data``: when the data is not on this machine (a fresh clone rendering tables from committed run
    records), the id of the stored run with this exact config (its data fingerprint is in its metadata); two
    stored runs of this config on different data is an error naming both; none gives an id no run has.
    """
    try:
        return run_id(to_dict(cfg), data_fingerprint(cfg.data, store_root))
    except FileNotFoundError:
        if not without_data:
            raise
    return stored_identity(cfg, store_root)


def stored_identity(cfg: RunConfig, store_root: str | Path) -> str:
    """The stored run of ``cfg``'s config (data unseen): see :func:`run_identity`."""
    import json

    from mimea.store.ids import canonical

    want = canonical(to_dict(cfg))
    prefix = run_id(to_dict(cfg)).rsplit("-", 1)[0] + "-"
    runs = Path(store_root) / "runs"
    found = []
    for d in sorted(runs.glob(f"{prefix}*")) if runs.is_dir() else []:
        try:
            if canonical(json.loads((d / "config.json").read_text(encoding="utf-8"))) == want:
                found.append(d.name)
        except (OSError, ValueError):
            continue
    if len(found) > 1:
        raise ValueError(f"the data of {cfg.data.dataset!r} is not here and {len(found)} stored runs have this "
                         f"config on different data ({', '.join(found)}); pass --data-dir")
    return found[0] if found else f"{prefix}nodata"


def load_data(data: DataConfig, cache_root: str | Path = "results/data") -> MMKGPair:
    root, name = data_location(data, cache_root)
    return _load_cached(str(root), name, data.use_names, data.missing_image, data.top_k_features)


#: Validation candidate pools (``eval.valid_pool``).
VALID_POOLS = ("valid", "unseen")


def run(cfg: RunConfig, store_root: str | Path = "results", *, force: bool = False,
        on_eval: Callable[[int, dict], None] | None = None, restart_damaged: bool = False) -> dict[str, Any]:
    """Run (or resume, or reuse) one configured run; returns ``{"run_id", "results", "metadata", "path"}``.

    ``on_eval(epoch, valid_metrics)`` is called after every validation (the tuner reports to Optuna's pruner
    there and may raise to stop the run; the checkpoint then stays for a later resume). A damaged stored file is a
    one-line DamagedRunError; ``restart_damaged`` moves it aside and starts the run over (mimea.store.damage).
    """
    store = RunStore(store_root)
    fingerprint = data_fingerprint(cfg.data, store_root)
    rid = run_id(to_dict(cfg), fingerprint)   # = run_identity(cfg, store_root), the fingerprint computed once
    # two processes never train the same run at once; a finished run is readable from a read-only store
    with run_lock(store_root, rid, read_only_ok=lambda: not force and store.is_finished(rid)):
        with record_failure(store.path(rid)):   # failed.json with the one-line error when the attempt raises
            if restart_damaged:
                set_aside_damaged(store.path(rid))
            return _run_locked(cfg, store, rid, fingerprint, force=force, on_eval=on_eval)


def _run_locked(cfg: RunConfig, store: RunStore, rid: str, fingerprint: str, *, force: bool,
                on_eval: Callable[[int, dict], None] | None) -> dict[str, Any]:
    from mimea.data.splits import make_split, split_to_dict
    from mimea.evaluation.neighbours import mutual_nearest_neighbours
    from mimea.evaluation.pool import evaluate_in_pool, unseen_pool
    from mimea.evaluation.ranking import evaluate

    store_root = store.root
    config = to_dict(cfg)
    if store.is_finished(rid) and not force:
        return {"run_id": rid, **store.load(rid), "path": store.path(rid), "reused": True}
    if force:
        store.remove(rid)

    wall0 = time.perf_counter()
    source = git_commit()   # the code this attempt runs: read now, not when it ends (the tree may change meanwhile)
    set_threads(cfg.train.threads)
    allocator = "keep freed memory" if keep_freed_memory() else "system"
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.seed)
    pair = load_data(cfg.data, Path(store_root) / "data")
    split = make_split(pair.links, cfg.split.ratio, mode=cfg.split.mode, split_seed=cfg.split.split_seed,
                       val_fraction=cfg.split.val_fraction)
    store.start(rid, config)
    store.write_json(rid, "split.json", split_to_dict(split))

    seed_everything(cfg.seed)  # model init depends on the init seed only, not on how much data loading drew
    cls = registry.get(cfg.model)
    dpair = pair.to(device)
    model = cls(dpair, model_config(cfg)).to(device)
    ev = cfg.eval

    for key, pool in (("valid_pool", ev.valid_pool), ("valid_pool_compare", ev.valid_pool_compare)):
        if pool not in (*VALID_POOLS, *((None,) if key == "valid_pool_compare" else ())):
            raise ValueError(f"eval.{key}={pool!r}; choose from {', '.join(VALID_POOLS)}")
    if "unseen" in (ev.valid_pool, ev.valid_pool_compare):   # each KG minus its training entities (unseen_pool)
        pool_l = unseen_pool(pair.kg1, split.train[:, 0], split.valid[:, 0]).to(device)
        pool_r = unseen_pool(pair.kg2, split.train[:, 1], split.valid[:, 1]).to(device)

    def validate_in(pool: str, emb: torch.Tensor) -> dict:
        if pool == "unseen":
            return evaluate_in_pool(emb, split.valid.to(device), pool_l, pool_r, similarity=ev.similarity,
                                    csls_k=ev.csls_k, chunk_size=ev.chunk_size)
        return evaluate(emb, split.valid.to(device), similarity=ev.similarity, csls_k=ev.csls_k,
                        chunk_size=ev.chunk_size)

    def validate(m) -> dict:
        return validate_in(ev.valid_pool, m.embed())

    def monitor(m) -> dict:   # recorded in the curve only, never used to select or stop
        emb, out = m.embed(), {}
        if ev.test_curve:     # the authors' protocol
            t = evaluate(emb, split.test.to(device), similarity=ev.similarity, csls_k=ev.csls_k,
                         chunk_size=ev.chunk_size)
            out["test"] = {"l2r": t["l2r"], "mean": t["mean"]}
        if ev.valid_pool_compare:
            out[f"valid_{ev.valid_pool_compare}"] = validate_in(ev.valid_pool_compare, emb)["mean"]
        return out

    seeder = None
    if cfg.train.iterative:
        known = torch.cat([split.train, split.valid]).to(device)
        all_left = pair.kg1.to(device)
        all_right = pair.kg2.to(device)

        def propose(m, seeds):
            used_l = torch.cat([known[:, 0], seeds[:, 0]])
            used_r = torch.cat([known[:, 1], seeds[:, 1]])
            left = all_left[~torch.isin(all_left, used_l)]
            right = all_right[~torch.isin(all_right, used_r)]
            return mutual_nearest_neighbours(m.embed(), left, right, similarity=ev.similarity,
                                             csls_k=ev.csls_k, chunk_size=ev.chunk_size)

        seeder = PseudoSeeder(propose, cfg.train.il_start, cfg.train.il_every, cfg.train.il_commit_every)

    model.prepare_training(split.train.to(device))   # seed-dependent data parts (MSNEA's swaps); train links only
    has_valid = len(split.valid) > 0   # split.val_fraction=0: every seed trains, the last epoch is the result
    trainer = Trainer(model, cfg.train, validate if has_valid else None, select_metric=cfg.train.select_metric,
                      seeder=seeder, save=lambda state: store.save_checkpoint(rid, state),
                      load=lambda: store.load_checkpoint(rid, map_location=device), on_eval=on_eval,
                      monitor=monitor if ev.test_curve or ev.valid_pool_compare else None,
                      desc=f"{cfg.model}/{cfg.data.dataset}/{cfg.split.ratio:g}/s{cfg.seed}",
                      attempt_info={"git_commit": source})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = trainer.fit(split.train.to(device))

    model.load_state_dict(result.best_state)  # selected on VALIDATION, or the last epoch's without validation
    emb = model.embed()
    test = evaluate(emb, split.test.to(device), similarity=ev.similarity, csls_k=ev.csls_k,
                    chunk_size=ev.chunk_size)
    store.save_checkpoint(rid, {"model": model.state_dict()}, name="best.pt")
    if ev.export_predictions:
        from mimea.evaluation.export import export_predictions

        export_predictions(emb, split.test.to(device), store.path(rid) / "predictions.csv",
                           names=pair.entity_names, similarity=ev.similarity, csls_k=ev.csls_k,
                           top_k=ev.top_k_export)
    weights = model.modality_weights()
    if weights is not None:
        names, w = weights
        test_ids = torch.cat([split.test[:, 0], split.test[:, 1]]).to(w.device)
        store.save_checkpoint(rid, {"names": list(names), "weights": w[test_ids].detach().cpu()},
                              name="modality_weights.pt")

    n_epochs_with_time = [h for h in result.history if "time_s" in h]
    env = environment(device)
    if env["git_commit"] != source:   # the checkout changed while this attempt ran: say so, keep the start's
        env["git_commit_at_end"] = env["git_commit"]
    env["git_commit"] = source
    metadata = {
        **env,
        "allocator": allocator,
        "run_id": rid,
        "wall_time_s": time.perf_counter() - wall0,
        # the time of the epochs kept (a resumed run: its attempts' segments up to their last checkpoint,
        # summed); time per epoch from the same. Each attempt (process) is listed with its own seconds.
        "train_time_s": result.train_time_s,
        "time_per_epoch_s": result.train_time_s / max(result.epochs_run, 1),
        "attempts": result.attempts,
        "resumed": len(result.attempts) > 1,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_by": result.stopped_by,
        "convergence": result.convergence,
        "peak_memory_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                           else peak_rss_mb()),
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_peak_rss",
        "n_parameters": model.n_parameters(),
        "protocol": {"iterative": cfg.train.iterative, "names": cfg.data.use_names,
                     "images": pair.provenance.get("image_features", "unknown"),
                     "missing_image_policy": pair.provenance.get("missing_image_policy"),
                     **{k: pair.provenance[k] for k in ("image_backbone",) if k in pair.provenance},
                     "split_mode": cfg.split.mode,
                     "selection": result.convergence.get("selection", "validation"),
                     "test_curve": bool(ev.test_curve),
                     **({"valid_pool_compare": ev.valid_pool_compare} if ev.valid_pool_compare else {}),
                     "profile": cfg.profile, **model.protocol()},
        "data": {**pair.provenance, "fingerprint": fingerprint},
        "split": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test),
                  "seeds_added_by_iterative": result.seeds_added},
        "n_evaluations": len([h for h in n_epochs_with_time if "valid" in h]),
    }
    results = {"test": test, "valid": result.best_valid, "curve": result.history,
               "best_epoch": result.best_epoch}
    store.finish(rid, results, metadata)
    return {"run_id": rid, "config": config, "results": results, "metadata": metadata,
            "path": store.path(rid), "reused": False}


def replicate_seeds(base_seed: int, replicates: int) -> list[int]:
    """Init seeds for R replicates: base, base+1, ... (fresh init seeds; the split stays fixed)."""
    return [base_seed + i for i in range(replicates)]


def with_seed(cfg: RunConfig, seed: int) -> RunConfig:
    return dataclasses.replace(cfg, seed=seed)


def main(argv: list[str] | None = None) -> int:
    """``python -m mimea.pipeline CONFIG.json [STORE_ROOT] [--restart-damaged]``: one run from a resolved config.

    Sweeps launch each run in its own process through this, so every run's peak memory is its own and a crash
    of one run does not end the sweep.
    """
    import sys

    from mimea.data.errors import DataError
    from mimea.store.damage import is_unwritable, unwritable
    from mimea.training.validate import ConfigError, check_config, config_from_file

    argv = list(sys.argv[1:] if argv is None else argv)
    restart_damaged = "--restart-damaged" in argv
    argv = [a for a in argv if a != "--restart-damaged"]
    if not argv:
        print("usage: python -m mimea.pipeline CONFIG.json [STORE_ROOT] [--restart-damaged]", file=sys.stderr)
        return 2
    try:
        cfg = config_from_file(argv[0])
        check_config(cfg)
        out = run(cfg, argv[1] if len(argv) > 1 else "results", restart_damaged=restart_damaged)
    except (DataError, ConfigError) as exc:
        print(f"mimea: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not is_unwritable(exc):
            raise
        print(f"mimea: error: {unwritable(exc)}", file=sys.stderr)
        return 2
    print(out["run_id"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
