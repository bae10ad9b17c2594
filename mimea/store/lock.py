"""One exclusive lock per run id, so two processes on one store never train the same run at once."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def run_lock(store_root: str | Path, rid: str) -> Iterator[None]:
    """Hold ``STORE/.locks/<rid>.lock`` exclusively (``flock``): the second process waits, then reuses or resumes
    what the first left. Released by the OS when a holder dies. Not reentrant: take it once per process."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no lock (concurrent identical configs are rare)
        yield
        return
    lock_dir = Path(store_root) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{rid}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
