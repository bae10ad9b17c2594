"""Optuna studies: storage, sampler and pruner, the worker loop, and ``mimea tune``.

Storage is Optuna's RDB storage: ``sqlite:///results/tuning/<study>.db`` by default (several worker processes on
one machine), ``postgresql://USER:PASS@HOST/DB`` for workers on several machines (extra ``postgres``).

Counting: the study is finished when it holds N trials that are COMPLETE or PRUNED. A worker starts a trial only
while ``finished + running < N``, and a trial that still slips past (two workers asking at the same instant) is
closed as FAIL with user attr ``surplus`` before it trains, so a study never ends with more than N. A killed
worker's trial stops sending heartbeats (``MIMEA_TUNE_HEARTBEAT`` seconds apart); after the grace period
(``MIMEA_TUNE_GRACE``, default twice the heartbeat) any worker marks it FAIL and re-queues its configuration
once, which then resumes from the killed run's checkpoint. Re-running the same command therefore continues up to
N finished trials: none lost, none counted twice.

Workers: ``mimea tune`` is one worker in its own process (default); ``--workers N --executor submitit`` submits
N worker jobs instead (:mod:`mimea.executors`: Slurm, or submitit's local executor), which share the study's
storage and run store, then writes the report when they are done. The counting above holds for any mix of them.

Sampler: TPE with ``constant_liar`` (parallel workers do not pile onto one point), seeded by ``MIMEA_TUNE_SEED``
when set: reseeded per trial number, so a one-worker study is reproducible and a resumed or extended one continues
its sequence instead of replaying it. A trial whose configuration equals a finished trial's is closed as FAIL
(user attr ``duplicate_of``) before it trains: a repeat never counts as a new trial. Pruner: ``MedianPruner`` after 2 startup trials, pruning from
epoch ``max(epochs // 5, eval_every + 1)`` on, so no trial is pruned at its first validation.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from mimea.store.ids import canonical
from mimea.training.config import RunConfig, to_dict
from mimea.tuning.objective import FINISHED, DuplicateTrial, Objective, SurplusTrial

HEARTBEAT_ENV = "MIMEA_TUNE_HEARTBEAT"
GRACE_ENV = "MIMEA_TUNE_GRACE"
SEED_ENV = "MIMEA_TUNE_SEED"
DEFAULT_HEARTBEAT_S = 60
#: study user attr holding the base configuration (canonical, id-neutral keys removed) it was created for
BASE_ATTR = "mimea_base_config"
#: errors that fail one trial (recorded FAIL) without ending the study: a diverging or out-of-memory config
TRIAL_ERRORS: tuple[type[Exception], ...] = (SurplusTrial, DuplicateTrial, FloatingPointError, MemoryError)


def default_study_name(cfg: RunConfig) -> str:
    """``<model>-<dataset>-r<ratio>-<profile>``."""
    return f"{cfg.model}-{cfg.data.dataset}-r{cfg.split.ratio:g}-{cfg.profile}"


def default_storage(results_root: str | Path, study_name: str) -> str:
    """``sqlite:///<results>/tuning/<study>.db`` (absolute path; the directory is created)."""
    path = (Path(results_root) / "tuning" / f"{study_name}.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _env_int(name: str, default: int | None) -> int | None:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"${name} must be a whole number of seconds, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"${name} must be positive, got {value}")
    return value


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, from ``MIMEA_TUNE_HEARTBEAT`` / ``MIMEA_TUNE_GRACE``."""
    interval = _env_int(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)
    assert interval is not None
    return interval, _env_int(GRACE_ENV, 2 * interval) or 2 * interval


def redact(url: str) -> str:
    """The storage URL with its password hidden (for messages and logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported as given, minus nothing secret we can parse
        return url.split("@")[-1]


def normalize_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` with the installed driver named: SQLAlchemy 2.1 defaults to psycopg 3,
    while the ``postgres`` extra installs psycopg2; whichever is importable is used (psycopg2 first)."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    raise ValueError(f"storage {redact(url)} needs a PostgreSQL driver: pip install 'mimea[postgres]'")


def open_storage(url: str, *, tries: int = 6) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with heartbeats; retried while several workers create the same schema at once."""
    import sqlalchemy.exc

    url = normalize_url(url)
    interval, grace = heartbeat_settings()
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}  # writers queue on SQLite's lock instead of failing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    last: Exception | None = None
    for attempt in range(tries):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=interval,
                                                  grace_period=grace, heartbeat_stale_trial_callback=retry)
        except ImportError as exc:  # optuna re-raises a missing DB driver as ImportError
            raise ValueError(f"storage {redact(url)}: no database driver ({exc.__cause__ or exc}); "
                             f"for PostgreSQL: pip install 'mimea[postgres]'") from None
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.InternalError) as exc:  # schema-creation race, server not up yet, file locked
            last = exc
            time.sleep(0.5 * (attempt + 1))
        except sqlalchemy.exc.SQLAlchemyError as exc:  # a malformed URL, an unknown dialect: no point retrying
            last = exc
            break
    first_line = str(last).strip().splitlines()[0] if last else ""
    raise ValueError(f"cannot open storage {redact(url)}: {first_line}")


def make_pruner(base: RunConfig) -> optuna.pruners.BasePruner:
    warmup = max(base.train.epochs // 5, base.train.eval_every + 1)  # the first validation never prunes
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup, interval_steps=1)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE (``constant_liar``) reseeded for every trial from (study seed, trial number).

    A plain ``TPESampler(seed=s)`` restarts its random sequence in every process: a resumed or extended study then
    replays its first trials' configurations (trials 2, 3 copies of 0, 1). Seeding each trial by its number
    continues the sequence instead: the same study seed gives the same trial sequence however the study was
    interrupted, resumed or extended, and no two trial numbers share a seed. TPE reads every earlier trial from
    the storage, so a fresh TPE per trial loses nothing.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._inner = self._tpe(0)

    def _tpe(self, number: int) -> optuna.samplers.TPESampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=(self.seed * 1_000_003 + number) % 2**32, constant_liar=True)

    def before_trial(self, study, trial) -> None:
        self._inner = self._tpe(trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def make_sampler() -> optuna.samplers.BaseSampler:
    """TPE; with ``MIMEA_TUNE_SEED`` a :class:`TrialSeededSampler` (reproducible, never replays on resume)."""
    text = os.environ.get(SEED_ENV, "").strip()
    if text and not text.isdigit():
        raise ValueError(f"${SEED_ENV} must be a non-negative whole number, got {text!r}")
    if text:
        return TrialSeededSampler(int(text))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(constant_liar=True)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def open_study(study_name: str, storage_url: str, base: RunConfig, *, tries: int = 6) -> optuna.Study:
    """Create or load the study (``load_if_exists``); refuse one that was made for another base configuration."""
    import sqlalchemy.exc

    storage = open_storage(storage_url)
    for attempt in range(tries):
        try:
            study = optuna.create_study(study_name=study_name, storage=storage, sampler=make_sampler(),
                                        pruner=make_pruner(base), direction="maximize", load_if_exists=True)
            break
        except sqlalchemy.exc.OperationalError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"study {study_name!r} in {redact(storage_url)} minimises; mimea studies maximise "
                         f"validation MRR: pass another --study-name")
    current = json.loads(canonical(to_dict(base)))
    stored = study.user_attrs.get(BASE_ATTR)
    if stored is None:
        study.set_user_attr(BASE_ATTR, current)
    elif stored != current:
        a, b = _flat(stored), _flat(current)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(f"study {study_name!r} in {redact(storage_url)} was made for another base configuration "
                         f"(differs in {', '.join(diff[:6])}); pass another --study-name")
    return study


def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, *,
               timeout: float | None = None, on_trial: Callable[[FrozenTrial], None] | None = None,
               poll_s: float | None = None) -> int:
    """Run trials until the study holds ``n_trials`` COMPLETE or PRUNED trials (or ``timeout`` seconds pass).

    While the other workers' running trials would fill the study, this worker waits (polling), so it can take
    over if one of them dies. Returns the number of trials this worker ran.
    """
    interval, _ = heartbeat_settings()
    poll = poll_s if poll_s is not None else min(5.0, float(interval))
    stop_at = None if timeout is None else time.monotonic() + timeout
    last: list[FrozenTrial] = []
    callbacks = [optuna.study.MaxTrialsCallback(n_trials, states=FINISHED), lambda s, t: last.append(t)]
    if on_trial is not None:
        callbacks.append(lambda s, t: on_trial(t))
    ran = failed_in_a_row = 0
    while True:
        fail_stale(study)
        done = count(study, FINISHED)
        if done >= n_trials or (stop_at is not None and time.monotonic() >= stop_at):
            return ran
        if done + count(study, (TrialState.RUNNING,)) >= n_trials:
            time.sleep(poll)
            continue
        study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS, callbacks=callbacks)
        ran += 1
        t = last[-1] if last else None
        if t is not None and t.state == TrialState.FAIL and not t.user_attrs.get("surplus"):
            failed_in_a_row += 1
            if failed_in_a_row > n_trials:
                raise RuntimeError(f"{failed_in_a_row} trials in a row failed or repeated a finished trial's "
                                   f"configuration (is the search space exhausted?); see the log above")
        else:
            failed_in_a_row = 0


def worker_job(base: RunConfig, n_trials: int, study_name: str, storage: str, store_root: str,
               timeout: float | None) -> int:
    """Body of one submitted worker: open the shared study, run trials until it is full; the trials it ran."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(study_name, storage, base)
    objective = Objective(base, store_root, n_trials)
    return run_worker(study, objective, n_trials, timeout=timeout,
                      on_trial=lambda t: print(describe_trial(t), flush=True))


def run_worker_jobs(executor, workers: int, base: RunConfig, study: optuna.Study, n_trials: int, *, storage: str,
                    store_root: Path, timeout: float | None, echo: Callable[[str], None],
                    poll_s: float = 2.0) -> int:
    """Submit ``workers`` :func:`worker_job` s through ``executor``, echo each trial as it finishes, wait for all.

    Returns the trials they ran; a worker job that failed is reported (its log named), the others go on.
    """
    jobs = [executor.submit(worker_job, base, n_trials, study.study_name, storage, str(store_root), timeout,
                            name=f"mimea-tune-{study.study_name}") for _ in range(workers)]
    echo(f"{workers} worker job(s) submitted ({', '.join(j.job_id for j in jobs)}); {executor.describe()}")
    seen = {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
    try:
        while True:
            done = all(job.done() for job in jobs)
            for t in study.get_trials(deepcopy=False, states=FINISHED):
                if t.number not in seen:
                    seen.add(t.number)
                    echo(describe_trial(t))
            if done:
                break
            time.sleep(poll_s)
    except BaseException:
        for job in jobs:
            job.stop()
        raise
    ran = 0
    for job in jobs:
        try:
            ran += int(job.result())
        except Exception as exc:  # noqa: BLE001 - one failed worker does not hide the others' trials
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            echo(f"worker job {job.job_id} failed: {first[:300]} (log: {job.log})")
    return ran


def describe_trial(t: FrozenTrial) -> str:
    """One line per finished trial (printed by each worker)."""
    value = f"{t.value:.4f}" if t.value is not None else "-"
    if t.state == TrialState.PRUNED and t.intermediate_values:
        step = max(t.intermediate_values)
        value = f"{t.intermediate_values[step]:.4f}@{step}"
    params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
    note = " (surplus)" if t.user_attrs.get("surplus") else ""
    if "duplicate_of" in t.user_attrs:
        note = f" (repeats trial {t.user_attrs['duplicate_of']}: not counted)"
    return f"trial {t.number:>3} {t.state.name:<8} valid MRR {value:<12} {params}{note}"


def tune(base: RunConfig, *, n_trials: int, results: str | Path = "results", storage: str | None = None,
         study_name: str | None = None, out: str | Path | None = None, timeout: float | None = None,
         replicate_best: int = 0, workers: int = 1, executor=None,
         echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) a study of ``base.model`` on validation MRR; write the report; optionally replicate.

    ``executor`` None: this process is the study's one worker. Else ``workers`` worker jobs go through it
    (:class:`mimea.executors.SubmititExecutor`) and this process waits for them.

    Returns ``{"study": Study, "study_name", "storage", "out", "best": best.json dict or None,
    "replicates": replicate_best.json dict or None, "ran": trials this worker ran}``.
    """
    from mimea.tuning import report

    if n_trials < 1:
        raise ValueError(f"--n-trials must be at least 1, got {n_trials}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if executor is None and workers != 1:
        raise ValueError("--workers N submits N worker jobs: add --executor submitit (or start the command N times, "
                         "docs/tuning.md)")
    name = study_name or default_study_name(base)
    url = storage or default_storage(results, name)
    study_dir = Path(results) / "tuning" / name
    out_dir = Path(out) if out else study_dir
    study = open_study(name, url, base)
    echo(f"study {name} ({redact(url)}): {count(study, FINISHED)}/{n_trials} trials finished; "
         f"objective: validation MRR")
    if executor is None:
        objective = Objective(base, study_dir, n_trials)
        ran = run_worker(study, objective, n_trials, timeout=timeout, on_trial=lambda t: echo(describe_trial(t)))
    else:
        ran = run_worker_jobs(executor, workers, base, study, n_trials, storage=url, store_root=study_dir.resolve(),
                              timeout=timeout, echo=echo)
    fail_stale(study)
    best = report.write_report(study, base, out_dir)
    if best is None:
        echo(f"no complete trial yet in study {name}; nothing to report")
    else:
        echo(report.format_best(best, out_dir))
    replicates = None
    if replicate_best > 0 and best is not None:
        replicates = report.replicate_best(study, base, replicate_best, results, out_dir)
        echo(report.format_replicates(replicates))
    return {"study": study, "study_name": name, "storage": url, "out": out_dir, "best": best,
            "replicates": replicates, "ran": ran}


def tune_from_args(args, build_config: Callable[[Any], RunConfig], executor=None) -> int:
    """``mimea tune``: the CLI flags -> :func:`tune` (``executor``: from ``--executor``, None in-process). Exit
    status 0, or 1 when no trial completed."""
    if not getattr(args, "verbose", False):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = build_config(args)

    def echo(line: str) -> None:
        print(line, flush=True)

    result = tune(base, n_trials=args.n_trials, results=args.results, storage=args.storage,
                  study_name=args.study_name, out=args.out, timeout=args.timeout,
                  replicate_best=args.replicate_best, workers=args.workers, executor=executor, echo=echo)
    return 0 if result["best"] is not None else 1
