"""Where a sweep's runs and a study's workers execute beyond this process: one submitit job each.

``submitit`` (extra ``submitit``) submits a Python call as a Slurm job (``cluster="slurm"``), or runs it in a
process of this machine through its ``local`` executor (CI, a workstation); ``"auto"`` picks Slurm where
``sbatch`` exists, else local. submitit and Slurm do all the scheduling; this module only starts jobs and
reads their state back.

Across machines the run store (``--results``) must lie on a filesystem every node mounts. Two jobs never train
the same run: :func:`mimea.pipeline.run` holds the run's lock (:mod:`mimea.store.lock`, ``flock``, which NFS v4
and Lustre honour across nodes), the second job waits and then reuses or resumes the first's run. A rerun of the
same command collects every run that finished and submits only the others.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Mapping

CLUSTERS = ("auto", "slurm", "local", "debug")
#: job time limit unless ``timeout_min`` is given (submitit's own default, 2-5 minutes, kills real runs)
DEFAULT_TIMEOUT_MIN = 24 * 60


def run_config_logged(config_path: str, store_root: str, log_path: str) -> int:
    """A job's body: ``mimea.pipeline.main([config_path, store_root])`` with its output in ``log_path``."""
    from mimea.pipeline import main

    with open(log_path, "w", encoding="utf-8", buffering=1) as fh, contextlib.redirect_stdout(fh), \
            contextlib.redirect_stderr(fh):
        return int(main([config_path, store_root]))


class SubmititJob:
    """A submitted job, with the child-process interface of the sweep: ``poll()`` -> exit status or None, ``stop()``.

    ``poll`` returns the function's int result, 1 when the job raised or was killed (its error in its own log).
    """

    def __init__(self, job):
        self.job = job

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    @property
    def log(self) -> Path:
        """submitit's own log of the job (the scheduler's view: start, errors, time limit)."""
        return Path(self.job.paths.stderr)

    def done(self) -> bool:
        return bool(self.job.done())

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            result = self.job.result()
        except Exception:  # noqa: BLE001 - a failed job is a failed run; its traceback is in its logs
            return 1
        return int(result) if isinstance(result, (int, bool)) else 0

    def result(self) -> Any:
        return self.job.result()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)


class SubmititExecutor:
    """Submit calls through ``submitit.AutoExecutor``.

    folder: where submitit keeps each job's pickles and logs (``<job id>_*``); on the shared
        filesystem for Slurm. cluster: one of :data:`CLUSTERS`. parameters: ``update_parameters`` keywords,
        e.g. ``timeout_min``, ``cpus_per_task``, ``gpus_per_node``, ``mem_gb``, ``slurm_partition``.
    """

    name = "submitit"

    def __init__(self, folder: str | Path, cluster: str = "auto", parameters: Mapping[str, Any] | None = None):
        if cluster not in CLUSTERS:
            raise ValueError(f"--submitit-cluster {cluster!r}; choose one of {', '.join(CLUSTERS)}")
        try:
            import submitit
        except ImportError:
            raise ValueError("--executor submitit needs the submitit package: "
                             "pip install -c constraints.txt -e '.[submitit]'") from None
        self.folder = Path(folder)
        self.executor = submitit.AutoExecutor(folder=str(self.folder),
                                              cluster=None if cluster == "auto" else cluster)
        self.cluster = self.executor.cluster
        params = {"timeout_min": DEFAULT_TIMEOUT_MIN, **dict(parameters or {})}
        try:
            self.executor.update_parameters(**params)
        except (ValueError, TypeError, AssertionError, NameError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"--submitit-set: {first}") from None

    def submit(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> SubmititJob:
        if name:
            self.executor.update_parameters(name=name)
        return SubmititJob(self.executor.submit(fn, *args))

    def start_run(self, config_path: Path, store_root: Path, log_path: Path) -> SubmititJob:
        """One pipeline run (the sweep's interface, as its child processes)."""
        return self.submit(run_config_logged, str(config_path), str(store_root), str(log_path),
                           name=f"mimea-{Path(config_path).stem}")

    def describe(self) -> str:
        return f"submitit ({self.cluster}), job folders under {self.folder}"


def from_flags(executor: str, cluster: str, parameters: Mapping[str, Any], folder: str | Path):
    """``--executor`` / ``--submitit-cluster`` / ``--submitit-set`` -> None (in-process) or a SubmititExecutor
    whose jobs keep their submitit files under ``folder``; a submitit flag without ``--executor submitit`` is an
    error."""
    if executor == "submitit":
        return SubmititExecutor(folder, cluster, parameters)
    if executor != "inprocess":
        raise ValueError(f"--executor {executor!r}; choose inprocess or submitit")
    if parameters or cluster != "auto":
        raise ValueError("--submitit-cluster and --submitit-set need --executor submitit")
    return None


def add_executor_flags(parser, *, executor_help: str, set_example: str) -> None:
    """``--executor``, ``--submitit-cluster``, ``--submitit-set`` on ``parser`` (benchmarks/run.py, mimea tune)."""
    parser.add_argument("--executor", default="inprocess", choices=["inprocess", "submitit"], help=executor_help)
    parser.add_argument("--submitit-cluster", default="auto", choices=["auto", "slurm", "local", "debug"],
                        help="submitit's executor (default auto: slurm where sbatch exists, else local)")
    parser.add_argument("--submitit-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"job parameters, e.g. {set_example}")
