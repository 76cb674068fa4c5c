"""Keep freed memory for reuse: large CPU tensors then cost no fresh pages.

glibc's malloc serves every allocation above 32 MB (the ceiling of its mmap threshold) with a fresh
`mmap` and returns it with `munmap` when freed. ResUNet30 on a 10 s clip allocates and frees dozens
of such feature maps per clip (64-256 MB each), so each one is paged in and zeroed by the kernel
again: on two cores that was about a third of the net's time (BENCHMARKS.md). `reuse_freed_memory()`
tells glibc to serve large blocks from its heap and not to give freed heap memory back, so the
next clip reuses the same pages. The cost: the process keeps its peak memory (about 0.4 GB more for
ResUNet30 on 10 s clips) until it exits. It changes no result.

It applies to the whole process, from the call on, and only where the C library is glibc (Linux);
elsewhere it does nothing. So the library never calls it: the command line does, for the commands that
separate or score (its own process), and a program of yours may (`from dcase9.allocator import
reuse_freed_memory`) when it separates or scores much on the CPU (scoring 3000 clips widens 40 MB
float64 batches some 300 times: 46 s became 14 s on two cores, BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["reuse_freed_memory"]

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Freed memory at the top of the heap is returned to the system only above this much (the largest
# value mallopt takes: an int).
_KEEP_BYTES = 2**31 - 1

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Make glibc keep and reuse freed memory instead of unmapping large blocks (idempotent).

    Returns whether the setting is in effect (False off glibc, or when mallopt refused it).
    """
    global _applied
    if _applied is None:
        _applied = _mallopt_keep()
    return _applied


def _mallopt_keep() -> bool:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (AttributeError, OSError, ValueError, TypeError):  # no confstr name, no glibc, no symbol
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. No mmap for large blocks (they come from the heap), and no
    # trimming of the heap's free top (the next clip's feature maps land on the same pages).
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
