"""One exclusive lock per run id, so two processes on one store never train the same run at once."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def run_lock(store_root: str | Path, rid: str, *,
             read_only_ok: Callable[[], bool] | None = None) -> Iterator[None]:
    """Hold ``STORE/.locks/<rid>.lock`` exclusively (``flock``): the second process waits, then reuses or resumes
    what the first left. Released by the OS when a holder dies. Not reentrant: take it once per process.

    When the lock file cannot be created (a read-only store) and ``read_only_ok()`` says the caller only reads (a
    finished run, written last and atomically), the body runs without a lock; otherwise that is one
    :class:`~mimea.store.damage.StoreNotWritable` line.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no lock (concurrent identical configs are rare)
        yield
        return
    from mimea.store.damage import is_unwritable, unwritable

    lock_dir = Path(store_root) / ".locks"
    fh = refused = None
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        fh = open(lock_dir / f"{rid}.lock", "a+")
    except OSError as exc:
        if not is_unwritable(exc):
            raise
        refused = exc
    if refused is not None:
        if read_only_ok is None or not read_only_ok():
            raise unwritable(refused, "this run is not finished in the store, so it has to train and write")
        yield              # nothing will be written: a finished run is read as stored
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
