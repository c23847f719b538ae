"""Priority for small calls inside a replica: large Ranks yield to them between chunks.

Admission (``oracle_server.tenants.fair_share``) caps how many calls a heavy tenant runs, but
an admitted large Rank (100k architectures: tens of ms of CPU) still shares the cores and the
GIL with a light tenant's small calls (100 architectures, < 1 ms). A small call that arrives
while a large one computes waits for the GIL (``sys.getswitchinterval()``, 5 ms by default)
and for the cores, so the light tenant's tail latency grows with the heavy tenant's work.

The ``PriorityGate`` of a process (``GATE``; its threshold is the ``--large-call-work``
setting) splits Rank calls by their work, architectures x devices:

* a small call (work <= ``large_call_work``) is counted while it runs (``small_call``);
* a large call computes in chunks of ``chunk`` architectures (whole-batch numpy per chunk,
  results concatenated: bit-identical to one pass) and, before each chunk, waits while any
  small call is in flight (``pace``), at most ``max_wait_s`` per chunk, so a stream of small
  calls slows a large call down but cannot starve it.

Yields are counted in ``oracle_large_call_yields_total`` and timed in
``oracle_large_call_yield_seconds``. ``large_call_work = 0`` turns the gate off (every call
is small; none yields).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from oracle_server import metrics

#: Default work (architectures x devices) above which a Rank is large and yields.
LARGE_CALL_WORK = 20_000
#: Architectures per chunk of a large Rank (numpy per chunk, ~0.1-10 ms each).
LARGE_CALL_CHUNK = 8192
#: Longest a large call waits for small calls before one chunk (bounded: no starvation).
MAX_WAIT_S = 0.05


class PriorityGate:
    """Counts small calls in flight; large calls ``pace()`` between their chunks."""

    def __init__(
        self,
        large_call_work: int = LARGE_CALL_WORK,
        *,
        chunk: int = LARGE_CALL_CHUNK,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._small = 0
        self.large_call_work = 0
        self.chunk = 1
        self.max_wait_s = 0.0
        self.configure(large_call_work, chunk=chunk, max_wait_s=max_wait_s)

    def configure(
        self,
        large_call_work: int,
        *,
        chunk: int | None = None,
        max_wait_s: float | None = None,
    ) -> PriorityGate:
        """Set the threshold (0 = off) and, optionally, the chunk size and the wait bound."""
        chunk = self.chunk if chunk is None else chunk
        max_wait_s = self.max_wait_s if max_wait_s is None else max_wait_s
        if large_call_work < 0:
            raise ValueError(f"large_call_work must be >= 0 (0 = off), got {large_call_work}")
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        if not 0.0 <= max_wait_s < float("inf"):
            raise ValueError(f"max_wait_s must be >= 0 and finite, got {max_wait_s}")
        self.large_call_work, self.chunk, self.max_wait_s = large_call_work, chunk, max_wait_s
        return self

    @property
    def small_in_flight(self) -> int:
        return self._small

    def is_large(self, work: int) -> bool:
        """True when a call of ``work`` (architectures x devices) yields to small calls."""
        return 0 < self.large_call_work < work

    @contextmanager
    def small_call(self) -> Iterator[None]:
        """Count a small call while it runs (also when it raises or is cancelled)."""
        with self._cond:
            self._small += 1
        try:
            yield
        finally:
            with self._cond:
                self._small -= 1
                if not self._small:
                    self._cond.notify_all()

    def pace(self) -> float:
        """Before a large call's chunk: wait while small calls are in flight, at most
        ``max_wait_s``. Returns the seconds waited (0.0 without waiting)."""
        if not self._small:  # the common case: no lock taken
            return 0.0
        t0 = time.perf_counter()
        with self._cond:
            self._cond.wait_for(lambda: not self._small, timeout=self.max_wait_s)
        waited = time.perf_counter() - t0
        metrics.LARGE_CALL_YIELDS.inc()
        metrics.LARGE_CALL_YIELD_SECONDS.observe(waited)
        return waited


#: The process's gate: one GIL and one set of cores per process, so one gate for every
#: ``Oracle`` of the process (``App`` applies ``--large-call-work`` to it at start).
GATE = PriorityGate()
