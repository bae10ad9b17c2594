"""Sessions: ``tests``, ``reproduce``, ``tune``, ``bench``. Every session installs from constraints.txt (exact pins).

GPU users: set ``MIMEA_TORCH_SPEC`` (e.g. ``MIMEA_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"``)
to install their own CUDA build of torch first; the rest of the pins then apply unchanged.
"""
from __future__ import annotations

import os
import shlex

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = os.environ.get("MIMEA_NOX_PYTHON") or None  # None: the interpreter nox runs under


def _install(session: nox.Session, extras: str = "test") -> None:
    spec = os.environ.get("MIMEA_TORCH_SPEC")
    if spec:
        session.install(*shlex.split(spec))
    session.install("-c", "constraints.txt", "-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (the README's test command; .ci/run runs exactly this)."""
    _install(session, "test,postgres,submitit,mmkb")
    # The example third-party model of docs/extending.md, so tests/test_plugins.py runs it through every command.
    session.install("--no-deps", "./tests/plugin_example")
    # One BLAS/OpenMP thread per process: the suite starts worker processes side by side (tuning, resume tests),
    # and 2-thread processes on a 2-core machine were measured to run up to 40x slower when oversubscribed.
    session.run("python", "-m", "pytest", "-q", *session.posargs,
                env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


@nox.session(python=PYTHON)
def reproduce(session: nox.Session) -> None:
    """All six tables and the figures. Default: the embedded synthetic data, smoke profile (minutes on a CPU).

    With no arguments it runs ``--replicates 2`` (so cells are mean ± std) and one run per core at a time, each on
    one thread (``--jobs N --set train.threads=1``). Any argument replaces these defaults, e.g. the real thing on a
    GPU: ``nox -s reproduce -- --data-dir PATH --profile paper``.
    """
    _install(session)
    jobs = max(1, min(4, os.cpu_count() or 1))
    args = session.posargs or ["--replicates", "2", "--jobs", str(jobs), "--set", "train.threads=1"]
    session.run("python", "benchmarks/run.py", "--table", "all", *args,
                env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
                if not session.posargs else None)


@nox.session(python=PYTHON)
def tune(session: nox.Session) -> None:
    """A short Optuna study of MIMEA on the embedded default."""
    _install(session, "test,postgres")
    args = session.posargs or ["--model", "mimea", "--n-trials", "6", "--no-progress", "--epochs", "10",
                               "--set", "train.eval_every=2", 'data.synthetic={"n_latent": 600}']
    session.run("mimea", "tune", *args)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks (not tests): ranking, GAT, one MIMEA epoch. Some need the real data."""
    _install(session)
    for script in ("bench_ranking.py", "bench_gat.py", "bench_epoch.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)
