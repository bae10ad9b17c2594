"""Which runs a table needs, and running the missing ones, each in its own child process.

A table's ``plan(ctx)`` returns :class:`RunSpec` s (one resolved config each). :func:`execute` runs those whose
``results.json`` is not in the store yet, one child process per run, so every run's peak memory is its own and a
crash ends that run only; a killed sweep resumes (finished runs are reused, never run twice; a run with a
checkpoint resumes from it). :func:`collect` then loads every finished run for the tables.

Child processes: ``forkserver`` (default on POSIX) forks each run from a server that has already imported torch,
torch-geometric and POT; on this 2-core CPU that import alone takes ~10 s of CPU per process (measured:
``python -X importtime``, torch_geometric 10.5 s under load), which a sweep of ~50 short smoke runs would
otherwise pay every time. ``subprocess`` runs ``python -m mimea.pipeline CONFIG.json STORE_ROOT`` instead.
Beyond this machine, the launcher is an executor object instead of a name (:class:`mimea.executors.
SubmititExecutor`: one submitit job per run, Slurm or its local executor); it has the same ``poll``/``stop``
interface, so :func:`execute` neither knows nor cares where a run executes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mimea.pipeline import run_identity
from mimea.store import RunStore, atomic_write_json
from mimea.store.damage import DamagedRunError, damaged_files, failure
from mimea.training.config import RunConfig, resolve, to_dict

from benchmarks.tables.registry import DATASETS, DEFAULT_REPLICATES, MODELS, PRIMARY_DATASET, RATIOS, \
    SINGLE_RATIO, DatasetDef

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Heavy third-party imports the fork server loads once (a module that fails to import is skipped by Python).
_PRELOAD = ["torch", "numpy", "scipy", "torch_geometric", "ot"]


@dataclass
class Context:
    """Everything a table needs to know about this invocation (from the command line)."""

    profile: str = "smoke"
    data_dir: str | None = None                # resolved ROOT of the real data; None: synthetic stand-ins
    datasets: tuple[str, ...] | None = None    # --dataset: datasets of tables 1, 4 (all) and 5, 6 (first)
    replicates: int = DEFAULT_REPLICATES
    models: tuple[str, ...] = MODELS
    ratios: tuple[float, ...] | None = None    # --ratios: tables 2, 3 (all) and 4, 5, 6 (first)
    results: Path = Path("results")
    out: Path = Path("paper_tables")
    tuned: Path | None = None
    overrides: dict = field(default_factory=dict)        # --set KEY=VALUE over RunConfig (not model_config)
    model_overrides: dict = field(default_factory=dict)  # --set model_config.KEY=VALUE, where the model has KEY
    launcher: Any = "forkserver"                # a child-process kind, or an executor (mimea.executors)
    progress: bool = True
    jobs: int = 1                              # --jobs: runs at a time

    @property
    def synthetic(self) -> bool:
        return self.data_dir is None

    def main_ratios(self) -> tuple[float, ...]:
        return tuple(self.ratios) if self.ratios else RATIOS

    def single_ratio(self) -> float:
        return float(self.ratios[0]) if self.ratios else SINGLE_RATIO

    def dataset_keys(self, default: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.datasets) if self.datasets else tuple(default)

    def primary_dataset(self) -> str:
        return self.datasets[0] if self.datasets else PRIMARY_DATASET

    def seeds(self) -> list[int]:
        from mimea.pipeline import replicate_seeds

        return replicate_seeds(int(self.overrides.get("seed", 0)), self.replicates)


def dataset_def(key: str) -> DatasetDef:
    """The table definition of a dataset; a folder name the registry does not know gets a plain one."""
    return DATASETS.get(key) or DatasetDef(key, key, ("KG1", "KG2"), {}, key)


def dataset_label(ctx: Context, key: str) -> str:
    d = dataset_def(key)
    return f"synthetic-{d.synthetic_tag}" if ctx.synthetic else d.label


def data_overrides(ctx: Context, key: str) -> dict[str, Any]:
    """The ``data`` section for dataset ``key``: the real folder, or its synthetic stand-in."""
    if ctx.synthetic:
        if key not in DATASETS:
            raise KeyError(f"dataset {key!r} has no synthetic stand-in (only {', '.join(DATASETS)}); "
                           f"give --data-dir ROOT holding {key}/")
        return {"dataset": "synthetic", "data_dir": None, "synthetic": dict(DATASETS[key].synthetic)}
    return {"dataset": key, "data_dir": ctx.data_dir}


def check_datasets(ctx: Context, keys: Iterable[str]) -> None:
    """Every dataset a sweep needs must exist: a synthetic stand-in, or ``data_dir/<key>/``."""
    for key in sorted(set(keys)):
        data_overrides(ctx, key)
        if not ctx.synthetic and not (Path(ctx.data_dir) / key).is_dir():
            raise FileNotFoundError(f"dataset {key}: no folder {Path(ctx.data_dir) / key} (--data-dir ROOT must "
                                    f"hold {key}/norm/)")


@dataclass
class RunSpec:
    """One run a table needs. ``variant`` names a model-config change (``""`` for the model's defaults)."""

    model: str
    dataset: str          # registry key (FBDB15K, FBYG15K, ...), also for its synthetic stand-in
    ratio: float
    seed: int
    variant: str
    config: RunConfig
    run_id: str


def deep_merge(*dicts: dict) -> dict:
    """Nested merge, later dicts win."""
    out: dict = {}
    for d in dicts:
        for k, v in (d or {}).items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = v
    return out


def _tuned(ctx: Context, model: str, dataset: str, ratio: float) -> tuple[dict, dict]:
    """(model_config, train) overrides from ``ctx.tuned/<model>/<dataset>/best.json``, else from the tuner's own
    study folder ``ctx.tuned/<model>-<dataset>-r<ratio>-<profile>/best.json``; empty when neither exists."""
    if ctx.tuned is None:
        return {}, {}
    for f in (Path(ctx.tuned) / model / dataset / "best.json",
              Path(ctx.tuned) / f"{model}-{dataset}-r{ratio:g}-{ctx.profile}" / "best.json"):
        if f.is_file():
            best = json.loads(f.read_text(encoding="utf-8"))
            return dict(best.get("model_config") or {}), dict(best.get("train") or {})
    return {}, {}


def _model_fields(model: str) -> set[str]:
    import dataclasses

    from mimea.models import registry

    return {f.name for f in dataclasses.fields(registry.get(model).Config)}


def make_spec(ctx: Context, model: str, dataset: str, ratio: float, seed: int,
              variant: dict[str, Any] | None = None) -> RunSpec:
    """Resolve one run: profile < tuned best.json < ``--set`` < what the table fixes (data, ratio, seed, variant)."""
    data = data_overrides(ctx, dataset)
    tuned_model, tuned_train = _tuned(ctx, model, data["dataset"], float(ratio))
    fields = _model_fields(model)
    user_model = {k: v for k, v in ctx.model_overrides.items() if k in fields}
    overrides = deep_merge({"train": {"progress": False}}, {"train": tuned_train}, ctx.overrides,
                           {"data": data, "split": {"ratio": float(ratio)}, "seed": int(seed)})
    cfg = resolve(model, ctx.profile, overrides, {**tuned_model, **user_model, **(variant or {})})
    label = ",".join(f"{k}={_short(v)}" for k, v in (variant or {}).items())
    return RunSpec(model, dataset, float(ratio), int(seed), label, cfg, run_identity(cfg, ctx.results, without_data=True))


def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "+".join(map(str, v))
    return str(v)


def check_model_overrides(ctx: Context, models: Iterable[str]) -> None:
    """``--set model_config.KEY`` must name a field of at least one of ``models`` (a typo is an error)."""
    known: set[str] = set()
    for m in models:
        known |= _model_fields(m)
    unknown = sorted(set(ctx.model_overrides) - known)
    if unknown:
        raise KeyError(f"--set model_config.{unknown[0]}: no model has that field")


# -- running ----------------------------------------------------------------------------------------------------

@dataclass
class SweepReport:
    needed: int = 0
    reused: int = 0
    ran: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)   # (run_id, log path)
    errors: dict[str, str] = field(default_factory=dict)          # run_id -> its one-line error (failed.json)
    seconds: float = 0.0


def unique(specs: Iterable[RunSpec]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for s in specs:
        seen.setdefault(s.run_id, s)
    return list(seen.values())


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _forked_run(config_path: str, store_root: str, log_path: str, extra: tuple[str, ...] = (),
                sweep_pid: int | None = None) -> None:
    """Body of a forked child: output to the run's log, then ``mimea.pipeline.main`` (its exit status)."""
    if sweep_pid is not None:
        from benchmarks.tables.children import die_with

        die_with(sweep_pid)   # SIGTERM to this child when the sweep exits, however it exits
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from mimea.pipeline import main

    code = 1
    try:
        code = main([config_path, store_root, *extra])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


_MP_CONTEXT = None


def _mp_context():
    global _MP_CONTEXT
    if _MP_CONTEXT is None:
        import multiprocessing as mp

        _MP_CONTEXT = mp.get_context("forkserver")
        _MP_CONTEXT.set_forkserver_preload(_PRELOAD)
    return _MP_CONTEXT


class _Child:
    """One run's child process, started by :func:`_start`: ``poll()`` -> exit status or None, ``stop()``."""

    def __init__(self, proc, log=None):
        self.proc, self.log = proc, log

    def poll(self) -> int | None:
        if isinstance(self.proc, subprocess.Popen):
            code = self.proc.poll()
        else:
            code = None if self.proc.is_alive() else (self.proc.exitcode if self.proc.exitcode is not None else 1)
        if code is not None and self.log is not None:
            self.log.close()
        return code

    def stop(self) -> None:
        self.proc.terminate()
        if isinstance(self.proc, subprocess.Popen):
            self.proc.wait()
        else:
            self.proc.join()
        if self.log is not None:
            self.log.close()


def launcher_name(launcher: Any) -> str:
    """``forkserver`` / ``subprocess``, or an executor's name and cluster (``submitit-local``, ``submitit-slurm``)."""
    if isinstance(launcher, str):
        return launcher
    return "-".join(x for x in (getattr(launcher, "name", type(launcher).__name__), getattr(launcher, "cluster", ""))
                    if x)


def _start(launcher: Any, config_path: Path, store_root: Path, log_path: Path, extra: tuple[str, ...] = ()):
    """Start one config's run (output to ``log_path``; ``extra``: pipeline flags): a child process for a launcher
    name, which dies with the sweep (:mod:`benchmarks.tables.children`), else a job of the executor object
    (``launcher.start_run``); either way a handle with ``poll()`` and ``stop()``."""
    if not isinstance(launcher, str):
        return launcher.start_run(config_path, store_root, log_path)
    if launcher == "forkserver":
        proc = _mp_context().Process(target=_forked_run, daemon=False,
                                     args=(str(config_path), str(store_root), str(log_path), tuple(extra),
                                           os.getpid()))
        proc.start()
        return _Child(proc)
    if launcher == "subprocess":
        log = open(log_path, "w", encoding="utf-8")
        from benchmarks.tables.children import preexec_die_with_parent

        child = subprocess.Popen([sys.executable, "-m", "mimea.pipeline", str(config_path), str(store_root),
                                  *extra], stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
                                 cwd=str(REPO_ROOT), preexec_fn=preexec_die_with_parent())
        return _Child(child, log)
    raise ValueError(f"unknown launcher {launcher!r}; choose forkserver or subprocess")


def execute(specs: Iterable[RunSpec], store_root: str | Path, *, launcher: Any = "forkserver",
            progress: bool = True, jobs: int = 1, restart_damaged: bool = False) -> SweepReport:
    """Run every spec not finished in the store, each in a child process or job of ``launcher`` (see
    :func:`_start`), ``jobs`` at a time (progress bar, ETA).

    ``restart_damaged``: a run with a damaged stored file (finished or not) has the file moved aside and starts
    over (:mod:`mimea.store.damage`); without it such a run fails with that file named.

    ``jobs > 1`` runs children side by side: set ``train.threads`` so that jobs x threads fits the cores. Each
    run's ``sweep.json`` records how many ran at once (its wall times and peak memory depend on it).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    store_root = Path(store_root).resolve()
    store = RunStore(store_root)
    todo = unique(specs)
    pending = [s for s in todo if not store.is_finished(s.run_id)
               or (restart_damaged and damaged_files(store.path(s.run_id)))]
    extra = ("--restart-damaged",) if restart_damaged else ()
    report = SweepReport(needed=len(todo), reused=len(todo) - len(pending))
    if not pending:
        return report
    queue, logs = store_root / "sweep", store_root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    at_once = min(jobs, len(pending))
    t0 = time.perf_counter()
    bar = tqdm(total=len(pending), desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)
    running: list[tuple[RunSpec, Any, Path, Path]] = []
    waiting = list(pending)

    def finish(spec: RunSpec, child, code: int, cfg_path: Path, log_path: Path) -> None:
        if code == 0 and store.is_finished(spec.run_id):
            report.ran += 1
            cfg_path.unlink(missing_ok=True)
            # how this sweep ran it (peak RSS depends on it: a forked child does not count library pages it
            # never touched, about 80 MB less than a fresh interpreter here; wall times depend on jobs)
            store.write_json(spec.run_id, "sweep.json", {"launcher": launcher_name(launcher), "jobs": at_once,
                                                         "log": log_path.relative_to(store_root).as_posix()})
        else:
            where = str(log_path) + (f"; job {child.job_id}: {child.log}" if hasattr(child, "job_id") else "")
            report.failed.append((spec.run_id, where))
            error = failure(store.path(spec.run_id))
            if error:
                report.errors[spec.run_id] = error
            bar.write(f"run {spec.run_id} failed (exit {code}){': ' + error if error else ''}; log: {where}")
        bar.update(1)

    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                spec = waiting.pop(0)
                bar.set_postfix_str(f"{spec.model} {spec.dataset} r{spec.ratio:g} s{spec.seed} {spec.variant}".strip())
                cfg_path = queue / f"{spec.run_id}.json"
                atomic_write_json(cfg_path, to_dict(spec.config))
                log_path = logs / f"{spec.run_id}.log"
                running.append((spec, _start(launcher, cfg_path, store_root, log_path, extra), cfg_path, log_path))
            still = []
            for spec, child, cfg_path, log_path in running:
                code = child.poll()
                if code is None:
                    still.append((spec, child, cfg_path, log_path))
                else:
                    finish(spec, child, code, cfg_path, log_path)
            if len(still) == len(running):
                time.sleep(0.1)
            running = still
    except BaseException:
        for _spec, child, _c, _l in running:
            child.stop()
        raise
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
    return report


# -- reading back -----------------------------------------------------------------------------------------------

@dataclass
class RunRecord:
    spec: RunSpec
    results: dict
    metadata: dict
    path: Path

    def metric(self, name: str, direction: str, split: str = "test") -> float | None:
        v = ((self.results.get(split) or {}).get(direction) or {}).get(name)
        return None if v is None else float(v)


def collect(specs: Iterable[RunSpec], store_root: str | Path,
            damaged: list[DamagedRunError] | None = None) -> dict[str, RunRecord]:
    """run id -> record of every finished run among ``specs`` (failed, missing or damaged runs are absent; the
    error of each damaged one is appended to ``damaged`` when given, else raised)."""
    store = RunStore(store_root)
    out: dict[str, RunRecord] = {}
    for s in unique(specs):
        if store.is_finished(s.run_id):
            try:
                run = store.load(s.run_id)
            except DamagedRunError as exc:
                if damaged is None:
                    raise
                damaged.append(exc)
                continue
            out[s.run_id] = RunRecord(s, run["results"], run["metadata"], store.path(s.run_id))
    return out


def group_records(specs: Iterable[RunSpec], runs: dict[str, RunRecord]) -> dict[tuple, list[RunRecord]]:
    """(model, dataset, ratio, variant) -> the finished replicate runs of that cell."""
    out: dict[tuple, list[RunRecord]] = {}
    for s in specs:
        cell = out.setdefault((s.model, s.dataset, s.ratio, s.variant), [])
        rec = runs.get(s.run_id)
        if rec is not None and all(r.path != rec.path for r in cell):
            cell.append(rec)
    return out
