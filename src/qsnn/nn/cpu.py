"""Process settings that make CPU training faster.

glibc returns every large freed block (>= 128 KiB .. 32 MiB, adaptive) to the OS and maps it
again on the next allocation, so each training step page-faults and zero-fills its activations
anew. Raising the mmap and trim thresholds keeps freed memory in the heap for reuse: measured
on the csnn step (B=128, T=25, 1 thread) 19% less CPU time for the fast path and 18% for the
snnTorch loop. The cost is that RSS stays at its peak instead of shrinking between steps.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>


def retain_freed_memory(threshold: int = 1 << 30) -> bool:
    """Keep freed blocks up to ``threshold`` bytes in the heap. True if applied (glibc only)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc (macOS, musl): leave the allocator alone
        return False
