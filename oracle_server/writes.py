"""One device write as it travels Oracle -> DeviceStore -> Registry.

``DeviceWrite`` carries everything a register / add-measurements / delete needs, in one
order (space, name, then the measurements) at every layer; ``Receipt`` is the client
request id recorded with it (idempotent writes, see ``oracle_server.registry``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from client_sdk.errors import InvalidArgument


@dataclass(frozen=True)
class Receipt:
    """The request id of a write, recorded in the write's own transaction.

    ``reply`` turns the write's result (a ``StoredDevice`` for register/add, the deleted
    flag for delete) into the serialised reply that a retry of the id will get; it runs
    inside the transaction, so if it fails nothing is written.
    """

    request_id: str
    operation: str
    fingerprint: str
    reply: Callable[[Any], bytes]
    scope: str = ""

    def map(self, convert: Callable[[Any], Any]) -> Receipt:
        """The same receipt, its ``reply`` fed ``convert(result)`` instead of ``result``."""
        reply = self.reply
        return Receipt(
            self.request_id,
            self.operation,
            self.fingerprint,
            lambda result: reply(convert(result)),
            self.scope,
        )


@dataclass(frozen=True, eq=False)
class DeviceWrite:
    """A write to one device: register, add measurements or delete.

    ``name`` may be a full ``'space/name'`` (with ``space`` empty or equal) where the
    ``Oracle`` accepts one (add_measurements, delete); ``Oracle.resolve`` splits it.
    ``genes``/``latency_ms``: the measurements (register, add_measurements; unused by
    delete). ``contract``: the device's measurement contract (register only). ``owner``:
    the tenant a registered device will belong to (register; None: nobody).
    ``require_owner``: the tenant the device must already belong to, checked on the locked
    row (add_measurements, delete; None: anyone's). ``receipt``: the request id recorded
    in the write's transaction (None: not idempotent).
    """

    space: str
    name: str
    genes: np.ndarray | None = None  # (k, g) int
    latency_ms: np.ndarray | None = None  # (k,) float
    _: KW_ONLY
    contract: dict = field(default_factory=dict)
    owner: str | None = None
    require_owner: str | None = None
    receipt: Receipt | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.space, self.name

    @property
    def full_name(self) -> str:
        return f"{self.space}/{self.name}"

    def measurements(self) -> tuple[np.ndarray, np.ndarray]:
        """(genes, latency_ms); INVALID_ARGUMENT if the write carries none."""
        if self.genes is None or self.latency_ms is None:
            raise InvalidArgument("no measurements given", field="archs")
        return self.genes, self.latency_ms

    def replace(self, **changes: Any) -> DeviceWrite:
        return dataclasses.replace(self, **changes)

    def map_receipt(self, convert: Callable[[Any], Any]) -> DeviceWrite:
        """The same write, its receipt (if any) fed ``convert(result)`` (``Receipt.map``)."""
        if self.receipt is None:
            return self
        return self.replace(receipt=self.receipt.map(convert))
