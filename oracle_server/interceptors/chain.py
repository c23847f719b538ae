"""The steps' common protocol: a ``Call`` (one RPC's state) handed down a chain of steps.

A step is one concern of the interceptor (metrics, error translation, drain, audit,
authentication, admission, reading the request, ...): a callable ``step(call, proceed)``
that does its part and runs the rest of the chain with ``proceed(call)`` (or raises instead).
``compose`` builds the chain once; each RPC then costs one ``Call`` and one function call
per step, and its handler is wrapped once, whatever the number of steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import grpc

    from oracle_server.tenants import Caller

ORACLE_SERVICE = "latency_oracle.v1.LatencyOracle"
WRITE_METHODS = frozenset({"RegisterDevice", "AddMeasurements", "DeleteDevice", "RegisterSpace"})
#: RPCs charged work (architectures x devices) and so admitted under the work limit.
WORK_METHODS = frozenset({"Rank"})


@dataclass(slots=True)
class Call:
    """One unary RPC as the steps see it: what its method fixes, and what steps fill in.

    ``message`` is the request as read and parsed; ``request`` is the request the handler
    gets, set once every check on it passed (so an audit line names a device only then)."""

    method: str
    labels: tuple[str, str, str]  # (grpc type, service, method): the grpc_server_* labels
    behaviour: Callable[[Any, grpc.ServicerContext], Any]  # the servicer's method
    parse: Callable[[Any], Any]  # raw request (bytes, or the request stream) -> message
    raw: Any
    context: grpc.ServicerContext
    caller: Caller | None = None  # set by ``Authentication``
    message: Any = None
    request: Any = None


Proceed = Callable[[Call], Any]


class Step(Protocol):
    def __call__(self, call: Call, proceed: Proceed) -> Any: ...


def invoke(call: Call) -> Any:
    """The end of every chain: the servicer's method on the checked request."""
    return call.behaviour(call.request, call.context)


def compose(steps: Sequence[Step], last: Proceed = invoke) -> Proceed:
    """``steps[0]`` outermost: ``compose([a, b])(call)`` runs ``a(call, b(call, last))``."""
    handle = last
    for step in reversed(steps):
        handle = functools.partial(step, proceed=handle)
    return handle


def split_method(full_method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method
