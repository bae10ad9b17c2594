"""The process's C allocator: keep freed memory for the next step instead of returning it to the system.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and gives it back with
``munmap`` when freed, so a training step that allocates the same large tensors each time pays a page fault for every
4 KiB page of them, every step (three MEAformer epochs with test evaluation on 4,096-d images: 1.47 M minor faults and
14.9 s of system time, 0.54 M and 8.6 s with this setting). :func:`keep_freed_memory` turns ``mmap`` allocation off and raises the trim threshold, so freed
blocks stay in the heap and the next step reuses them. It changes no number (the allocator decides where a tensor
lives, never what is computed in it); measured in docs/speed.md. ``MIMEA_MALLOC=system`` leaves the allocator as
it is. Anything other than glibc: a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: Freed memory kept before the heap's top is trimmed: effectively never (the process's peak is kept instead).
TRIM_THRESHOLD = 2**31 - 1
MODES = ("keep", "system")

_done = False


def allocator_mode() -> str:
    mode = os.environ.get("MIMEA_MALLOC", "keep").strip().lower() or "keep"
    if mode not in MODES:
        raise ValueError(f"MIMEA_MALLOC={mode!r}; choose from {', '.join(MODES)}")
    return mode


def keep_freed_memory() -> bool:
    """Apply the setting once per process; True when it is in effect (glibc, ``MIMEA_MALLOC`` not ``system``)."""
    global _done
    if allocator_mode() == "system":
        return False
    if _done:       # before the glibc check: platform.libc_ver() reads the interpreter's binary on every call
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success
    _done = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
