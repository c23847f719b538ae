"""Process-level tuning applied once at server start-up (``App``), not per request."""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def tune_allocator(mmap_threshold: int = 16 << 20, trim_threshold: int = 32 << 20) -> bool:
    """Serve multi-MB messages from the heap (glibc): True if applied.

    By default glibc gives every allocation above ~128 KiB its own ``mmap`` and returns
    freed memory to the OS at once, so each large Rank request/response (protobuf arena,
    serialised bytes, gRPC slices) page-faults its memory in again: ~9 ms of a 100k x 6
    device response (4.8 MB) instead of ~1 ms. Allocations up to ``mmap_threshold`` now
    come from the heap, and up to ``trim_threshold`` of free heap is kept. Skipped when
    the operator set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or on
    non-glibc platforms. ``App`` calls it when ``Settings.malloc_tuning`` is on (default).
    """
    if sys.platform != "linux" or any(
        k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
            and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except (OSError, AttributeError):
        return False
