"""A sweep's child processes die with it, however it dies (SIGKILL included).

* ``subprocess`` children (their parent is the sweep) ask the kernel for ``SIGTERM`` when their parent dies
  (``prctl(PR_SET_PDEATHSIG)``, Linux), right after the fork; if the sweep died before that, they exit at once.
* ``forkserver`` children are the fork server's, and the fork server outlives the sweep while any child holds
  its "alive" pipe, so the parent-death signal never comes. Each such child watches the sweep's pid instead: a
  daemon thread waits on a pidfd (``os.pidfd_open``, Linux >= 5.3; else it polls the pid once a second) and sends
  the child ``SIGTERM`` when the sweep exits. The fork server and resource tracker then exit on their own.

SIGINT and SIGTERM of the sweep also stop the children the orderly way (:func:`benchmarks.tables.sweep.execute`).
Checkpoints are written atomically, so a child killed at any moment leaves a resumable run.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

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


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:   # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def die_with(pid: int, sig: int = signal.SIGTERM) -> None:
    """Send this process ``sig`` when process ``pid`` (not necessarily its parent) exits; at once if it has."""
    try:
        fd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    except ProcessLookupError:
        os.kill(os.getpid(), sig)
        return
    except OSError:   # pidfd unsupported here: poll
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])   # readable once the process has exited
        else:
            while not _gone(pid):
                time.sleep(1.0)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()
