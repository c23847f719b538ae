"""The read watchdog: a call whose request is still arriving too long after its start is
cancelled, so that clients that never send their request cannot hold every worker thread."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from client_sdk.errors import DeadlineExceeded, OracleError
from oracle_server.interceptors.chain import Call, Proceed

log = logging.getLogger("oracle_server.interceptors")  # the package: its log lines keep their name


class ReadWatchdog:
    """Cancels calls whose request message is still arriving ``timeout_s`` after the handler
    started reading it.

    A unary oracle RPC is served as request-streaming (see ``OracleInterceptor``), so its
    handler, and a worker thread, wait while the body arrives; grpc has no server-side
    timeout for that. Without this, a few clients that open calls and never send their
    request (no deadline) would hold every worker and stall the server. One daemon thread
    checks every ``timeout_s / 4`` (at most 1 s); a read in progress costs a dict entry."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._reads: dict[int, tuple[float, grpc.ServicerContext]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self.cancelled = 0

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        """Step: read and parse the call's request (``call.message``) under the watch."""
        with self.watch(call.context):
            call.message = call.parse(call.raw)
        return proceed(call)

    def start(self, context: grpc.ServicerContext) -> int | None:
        if self.timeout_s <= 0:
            return None
        with self._lock:
            self._next += 1
            key = self._next
            self._reads[key] = (self._clock(), context)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="oracle-read-watchdog", daemon=True
                )
                self._thread.start()
        return key

    @contextlib.contextmanager
    def watch(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Around reading a call's request: a read the watchdog cancelled ends in
        ``DeadlineExceeded`` (whatever the interrupted read raised)."""
        key = self.start(context)
        try:
            yield
        except OracleError:
            if not self.done(key):
                raise DeadlineExceeded(
                    f"the request did not arrive within {self.timeout_s:g} s of the call's start"
                ) from None
            raise
        self.done(key)

    def done(self, key: int | None) -> bool:
        """End a read; False if the watchdog had cancelled it."""
        if key is None:
            return True
        with self._lock:
            return self._reads.pop(key, None) is not None

    def sweep(self) -> int:
        """Cancel every read older than the timeout; returns how many were cancelled."""
        now = self._clock()
        with self._lock:
            late = [k for k, (t0, _) in self._reads.items() if now - t0 > self.timeout_s]
            contexts = [self._reads.pop(k)[1] for k in late]
        for context in contexts:
            context.cancel()  # the blocked read raises; the handler returns
        if contexts:
            self.cancelled += len(contexts)
            log.warning(
                "request not received in time; call cancelled",
                extra={"calls": len(contexts), "timeout_s": self.timeout_s},
            )
        return len(contexts)

    def _loop(self) -> None:
        interval = min(1.0, self.timeout_s / 4)
        while True:
            time.sleep(interval)
            self.sweep()
