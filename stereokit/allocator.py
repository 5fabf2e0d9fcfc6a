"""Tell glibc's malloc to keep large blocks instead of mapping and unmapping one per tensor.

A full-resolution activation (67 MB at 544x960 inference, 34 MB in training) is above glibc's
mmap threshold, so by default every op output is a fresh mmap, page-faulted in, then munmapped:
about 1.3 million page faults per 544x960 inference, 42% of CPU time in the kernel. With mmap off
for the heap (M_MMAP_MAX = 0) and a trim threshold above one activation set, freed blocks go back
to malloc's free lists and the next op reuses them. Peak RSS is measured in docs/performance.md:
it stays within a few percent, because the same blocks are reused rather than grown.

Called once at process start (the CLI's main, which torchrun's workers also run); DataLoader
workers are forked and inherit it. STEREOKIT_MALLOC=system leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Free memory kept at the top of the heap before it is returned to the system.
TRIM_THRESHOLD = 1 << 30


def keep_large_blocks() -> bool:
    """Apply the setting; True when glibc took it (False elsewhere: musl, macOS, Windows, opted out)."""
    if os.environ.get("STEREOKIT_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
