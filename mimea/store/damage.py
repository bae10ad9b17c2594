"""Damaged, failed and unwritable run folders: one-line errors and the way out.

* **Damaged files.** A ``checkpoint.pt`` that ``torch.load`` cannot read (truncated, empty, garbage, not a
  dict), or a ``results.json`` / ``metadata.json`` / ``config.json`` that is not valid JSON, raises
  :class:`DamagedRunError` naming the file: ``results/runs/ID/checkpoint.pt: damaged (...); rerun with
  --restart-damaged ...``. Nothing is deleted on its own. With ``--restart-damaged`` (``mimea train`` and
  ``benchmarks/run.py``) the damaged file is renamed to ``<name>.damaged-<UTC timestamp>`` beside it and the run
  starts over (a damaged file of a finished run also sets its ``results.json`` aside, so the run is redone);
  ``mimea train --force`` discards the whole run folder as before.
* **Failed runs.** A run that raised after its folder was created gets ``failed.json`` (``{"error": one line,
  "type", "time"}``); the sweep prints that line. It is informative only: the next attempt removes it and retries.
* **Read-only stores.** :func:`mimea.store.lock.run_lock` reads a finished run without a lock when the lock file
  cannot be created; a run that has to write says so (:class:`StoreNotWritable`).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

from mimea.atomic import atomic_write_json
from mimea.data.errors import DataError

RESTART_HINT = "rerun with --restart-damaged to move it aside and start this run over"
FAILED = "failed.json"
#: Exceptions that stop a run on purpose and leave it resumable (Optuna's pruning): not failures.
NOT_FAILURES = ("TrialPruned",)
_RUN_JSON = ("config.json", "results.json", "metadata.json")


class DamagedRunError(DataError):
    """A file of a stored run cannot be read; ``str()`` is ``PATH: damaged (why); rerun with ...``."""

    def __init__(self, path: str | Path, why: str, hint: str = RESTART_HINT) -> None:
        super().__init__(path, None, f"damaged ({why}); {hint}")
        self.why, self.hint = why, hint

    def __reduce__(self):
        return (DamagedRunError, (self.path, self.why, self.hint))


class StoreNotWritable(DataError):
    """The run store (or a file in it) cannot be written, and this run has to write."""

    def __reduce__(self):
        return (StoreNotWritable, (self.path, self.line, self.message))


def _why(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# -- reading ------------------------------------------------------------------------------------------------------

def read_run_json(path: str | Path) -> Any:
    """JSON of a run file; a truncated, empty or garbage file is a :class:`DamagedRunError` naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except IsADirectoryError:
        raise DamagedRunError(path, "a folder, not a file") from None
    if not raw.strip():
        raise DamagedRunError(path, "empty file")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DamagedRunError(path, f"not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise DamagedRunError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def load_checkpoint(path: str | Path, map_location=None) -> dict | None:
    """A saved state (``weights_only``), None when absent; unreadable or not a dict: DamagedRunError."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size == 0:
        raise DamagedRunError(path, "empty file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):   # torch's zip format, or a legacy pickle
        raise DamagedRunError(path, f"not a torch checkpoint: {size} bytes starting {head!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError, TypeError,
            pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamagedRunError(path, f"torch.load: {_why(first)}; {size} bytes") from None
    if not isinstance(state, dict):   # every file the store saves holds a dict
        raise DamagedRunError(path, f"holds a {type(state).__name__}, not a saved state")
    return state


def damaged_files(run_dir: str | Path) -> list[tuple[Path, str]]:
    """(file, why) of every damaged file of one run folder (JSON files and ``checkpoint.pt``)."""
    run_dir = Path(run_dir)
    out = []
    for name in _RUN_JSON:
        f = run_dir / name
        if f.is_file():
            try:
                read_run_json(f)
            except DamagedRunError as exc:
                out.append((f, exc.why))
    ckpt = run_dir / "checkpoint.pt"
    if ckpt.is_file():
        try:
            load_checkpoint(ckpt, map_location="cpu")
        except DamagedRunError as exc:
            out.append((ckpt, exc.why))
    return out


def set_aside(path: str | Path) -> Path:
    """Rename ``path`` to ``path.damaged-<UTC timestamp>`` (kept for inspection); returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, target)
    return target


def set_aside_damaged(run_dir: str | Path) -> list[Path]:
    """``--restart-damaged``: move every damaged file of the run aside so the run starts over; a finished run with
    a damaged file also has its ``results.json`` moved aside (it is redone). Returns the new paths."""
    run_dir = Path(run_dir)
    bad = [f for f, _ in damaged_files(run_dir)]
    if bad and (run_dir / "results.json").is_file() and run_dir / "results.json" not in bad:
        bad.append(run_dir / "results.json")
    return [set_aside(f) for f in bad]


# -- failures -----------------------------------------------------------------------------------------------------

def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_why(exc)}" if not isinstance(exc, (DataError, ValueError)) else \
        " ".join(str(exc).split())


@contextlib.contextmanager
def record_failure(run_dir: str | Path) -> Iterator[None]:
    """Around one attempt of a run: drop a stale ``failed.json`` first; write one when the attempt raises (after
    the run folder exists). Interrupts (KeyboardInterrupt, a kill) and pruning leave the run resumable, unmarked."""
    run_dir = Path(run_dir)
    with contextlib.suppress(OSError):
        (run_dir / FAILED).unlink()
    try:
        yield
    except Exception as exc:
        if run_dir.is_dir() and not any(c.__name__ in NOT_FAILURES for c in type(exc).__mro__):
            with contextlib.suppress(OSError, ValueError):
                atomic_write_json(run_dir / FAILED, {"error": one_line(exc), "type": type(exc).__name__,
                                                     "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        raise


def failure(run_dir: str | Path) -> str | None:
    """The one-line error a failed run recorded, or None."""
    f = Path(run_dir) / FAILED
    if not f.is_file():
        return None
    try:
        return str(read_run_json(f).get("error"))
    except (DamagedRunError, AttributeError, OSError):
        return "failed (failed.json unreadable)"


def failed_runs(runs_dir: str | Path) -> dict[str, str]:
    """run id -> recorded error of every unfinished run folder with a ``failed.json``."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return {}
    return {p.name: failure(p) or "" for p in sorted(runs_dir.iterdir())
            if (p / FAILED).is_file() and not (p / "results.json").is_file()}


# -- writing ------------------------------------------------------------------------------------------------------

_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def is_unwritable(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _UNWRITABLE


def unwritable(exc: OSError, what: str = "this run has to write to the run store") -> StoreNotWritable:
    """One line for a refused write: ``PATH: cannot write (Permission denied); <what>``."""
    where = exc.filename or "the run store"
    return StoreNotWritable(where, None, f"cannot write ({exc.strerror or exc}); {what}; give --results a "
                                         f"writable folder")
