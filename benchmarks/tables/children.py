"""A sweep's child processes die with it, however it dies (SIGKILL included).

On Linux each child asks the kernel for ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``): a
``subprocess`` child right after its fork (its parent is the sweep), a ``forkserver`` child at its start (its parent
is the fork server, which exits when the sweep does: its pipe from the sweep reaches EOF). If the parent died
before the request took effect, the child sees another parent and exits at once. Elsewhere a killed sweep can
leave its children running; SIGINT and SIGTERM still stop them (:func:`benchmarks.tables.sweep.execute`).
"""
from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None and sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC or None


def die_with_parent(expected_parent: int | None = None, sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when this process's parent dies; exit now if the parent is already gone (or is not
    ``expected_parent``). True when the request was made (Linux), False where it is not available."""
    parent = os.getppid() if expected_parent is None else expected_parent
    libc = _libc()
    if libc is None:
        return False
    libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:   # the parent died before the request took effect
        os._exit(128 + int(sig))
    return True


def preexec_die_with_parent():
    """A ``Popen(preexec_fn=...)`` for children of this process (libc is loaded here, before any fork)."""
    libc, parent = _libc(), os.getpid()
    if libc is None:
        return None

    def preexec() -> None:  # runs in the child between fork and exec: only the prctl call and a pid check
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + int(signal.SIGTERM))

    return preexec
