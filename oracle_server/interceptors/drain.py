"""Draining: the oracle RPCs in flight, counted so that a stopping server can wait for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from client_sdk.errors import Unavailable
from oracle_server.interceptors.chain import Call, Proceed


class Drain:
    """Counts the oracle RPCs in flight and, once draining, refuses new ones.

    grpc's own ``server.stop(grace)`` destroys the server the moment its last call completes
    at the call level, which is when the reply has been handed to the transport, not when the
    client has read it: a large reply still held back by HTTP/2 flow control (a slow reader of
    a 40 MB Rank) is then reset with the connection. ``App.stop`` therefore drains in two
    steps: this object refuses new calls (``UNAVAILABLE``, which the SDK retries on another
    replica) and waits for the handlers in flight plus a short linger for their replies to be
    read, and only then is grpc's server stopped."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._last_exit = -float("inf")
        self.draining = False

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        """Step: the call is counted in flight while it runs (refused once draining)."""
        self.enter()
        try:
            return proceed(call)
        finally:
            self.exit()

    def enter(self) -> None:
        with self._cond:
            if self.draining:
                raise Unavailable("the server is shutting down; retry on another replica")
            self._in_flight += 1

    def exit(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._last_exit = self._clock()
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def begin(self) -> None:
        with self._cond:
            self.draining = True

    def wait_idle(self, timeout_s: float, linger_s: float) -> bool:
        """After ``begin``: wait (at most ``timeout_s``) until no call is in flight and the last
        one ended ``linger_s`` ago (its reply may still be on the wire). True if idle in time."""
        deadline = self._clock() + max(0.0, timeout_s)
        with self._cond:
            while True:
                now = self._clock()
                if self._in_flight == 0:
                    until = min(self._last_exit + linger_s, deadline)
                    if now >= until:
                        return True
                    self._cond.wait(until - now)
                elif now >= deadline:
                    return False
                else:
                    self._cond.wait(deadline - now)
