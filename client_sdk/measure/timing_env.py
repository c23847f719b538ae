"""What the harness sets on the process while it times, and restores afterwards.

* **CPU pinning** (``HarnessConfig.pin_cpus``): every thread of the process (the calling
  thread, torch's intra-op workers, ONNX Runtime's session threads) is restricted to the
  given CPUs with ``os.sched_setaffinity`` for the duration of the timing, and each thread
  gets its previous affinity back afterwards (threads started meanwhile get the calling
  thread's previous one). Linux only: Linux's ``sched_setaffinity(0, ...)`` moves only the
  calling thread, so the threads are enumerated from ``/proc/self/task``.
* **Flushing denormals** (``HarnessConfig.flush_denormal``): ``torch.set_flush_denormal(True)``
  (the FTZ and DAZ bits of the x86 MXCSR, or ARM's FZ bit) for the duration, then the
  previous state (probed with :func:`denormals_flushed`). The bits are per thread: torch sets
  them on the calling thread only, so at ``threads >= 2`` torch's intra-op worker threads
  keep denormals (probed here: a 4M-element multiply of denormals at 2 threads flushed half
  of them). ONNX Runtime sessions get ``session.set_denormal_as_zero = 1``
  (``onnx_runtime.session_options``), which covers their own intra-op threads too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import torch

__all__ = [
    "allowed_cpus",
    "check_flush_denormal",
    "check_pin_cpus",
    "denormals_flushed",
    "flushing_denormals",
    "pinned",
    "timing_environment",
]


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (``os.sched_getaffinity``), else ``0..cpu_count-1``."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def check_pin_cpus(cpus: Iterable[int] | None) -> tuple[int, ...] | None:
    """``cpus`` as a sorted tuple of distinct ids, checked: ``ValueError`` on a platform
    without ``os.sched_setaffinity``, for an empty set, and for an id this process may not
    run on (not in ``os.sched_getaffinity(0)``)."""
    if cpus is None:
        return None
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError(
            "pin_cpus needs os.sched_setaffinity (Linux); this platform has none: "
            "leave pin_cpus unset"
        )
    try:
        ids = tuple(sorted({int(c) for c in cpus}))
    except (TypeError, ValueError):
        raise ValueError(f"pin_cpus must be CPU ids (integers), got {cpus!r}") from None
    if not ids:
        raise ValueError("pin_cpus is empty: give at least one CPU id, or None for no pinning")
    allowed = allowed_cpus()
    missing = [c for c in ids if c not in allowed]
    if missing:
        raise ValueError(
            f"pin_cpus: CPU(s) {missing} do not exist or are not available to this process "
            f"(available: {','.join(map(str, sorted(allowed)))})"
        )
    return ids


def _thread_ids() -> list[int]:
    """The ids of this process's threads (``/proc/self/task``; 0 = the calling thread when
    there is no ``/proc``)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_affinity(tid: int, cpus: Iterable[int]) -> bool:
    try:
        os.sched_setaffinity(tid, cpus)
    except (ProcessLookupError, PermissionError):  # the thread ended meanwhile
        return False
    return True


@contextlib.contextmanager
def pinned(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Restrict every thread of the process to ``cpus`` (None: no-op); restore afterwards."""
    if cpus is None:
        yield
        return
    own = set(os.sched_getaffinity(0))
    before: dict[int, set[int]] = {}
    for tid in _thread_ids():
        try:
            before[tid] = set(os.sched_getaffinity(tid))
        except ProcessLookupError:
            continue
        _set_affinity(tid, cpus)
    os.sched_setaffinity(0, cpus)  # the calling thread, whatever /proc said
    try:
        yield
    finally:
        for tid in _thread_ids():
            _set_affinity(tid, before.get(tid, own))
        os.sched_setaffinity(0, own)


def denormals_flushed() -> bool:
    """Whether the calling thread flushes float32 denormals to zero now: ``1e-39`` (below
    float32's smallest normal, 1.18e-38) times one is zero only when FTZ/DAZ are on."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    return bool((tiny * 1.0).item() == 0.0)


def check_flush_denormal() -> None:
    """``ValueError`` when this CPU cannot flush denormals (``torch.set_flush_denormal``
    needs x86 with SSE3 or ARM); setting the current state again changes nothing."""
    if not torch.set_flush_denormal(denormals_flushed()):
        raise ValueError(
            "flush_denormal: this CPU cannot flush denormals to zero "
            "(torch.set_flush_denormal supports x86 with SSE3 and ARM)"
        )


@contextlib.contextmanager
def flushing_denormals(on: bool) -> Iterator[None]:
    """``torch.set_flush_denormal(True)`` on the calling thread while inside (False: no-op),
    then the previous state."""
    if not on:
        yield
        return
    before = denormals_flushed()
    if not torch.set_flush_denormal(True):
        raise ValueError("flush_denormal: this CPU cannot flush denormals to zero")
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@contextlib.contextmanager
def timing_environment(pin_cpus: tuple[int, ...] | None, flush_denormal: bool) -> Iterator[None]:
    """Both of the above, for the duration of a timing."""
    with pinned(pin_cpus), flushing_denormals(flush_denormal):
        yield
