"""The device store: every device the oracle serves, its head, and replica sync. No gRPC.

``DeviceStore`` holds the table devices of the served spaces (identity heads on each proxy's
basis outputs) and the registered devices (heads fit from their measurements, persisted in a
``Registry``). The device map is an immutable ``Snapshot`` replaced copy-on-write under a
lock: readers (the Rank hot path) take ``snapshot()`` once and never lock; writers build a
new map and swap it in. Replicas sharing one database pick up each other's writes with
``sync()`` (polled by ``start_polling``).

Two caches live here because they are keyed by what the store owns: each space's table
inputs (basis, features, descriptors of its bundled architectures) and each device head's
predictions over that table (``table_prediction``), dropped when the device goes.

Tests and tools inject devices with ``add_device`` (in memory, not persisted) or build a
store with ``DeviceStore.in_memory(models, devices)``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from client_sdk.errors import (
    NAME_RE,
    AlreadyExists,
    DeviceNotFound,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    SpaceNotFound,
)
from oracle_server import metrics
from oracle_server.predictor import HeadFit, LatencyModel
from oracle_server.ranking import TablePrediction, dense_rank
from oracle_server.registry import Registry, StoredDevice
from oracle_server.writes import DeviceWrite

log = logging.getLogger(__name__)

TABLE, REGISTERED = "table", "registered"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

DeviceKey = tuple[str, str]  # (space, name)


@dataclass(frozen=True)
class Device:
    space: str
    name: str
    source: str
    head: HeadFit
    contract: dict = field(default_factory=dict)
    revision: int = 0
    created_at: dt.datetime = _EPOCH
    updated_at: dt.datetime = _EPOCH
    genes: np.ndarray | None = None  # measured architectures (registered devices)
    latency_ms: np.ndarray | None = None
    owner: str | None = None  # tenant that registered it (oracle_server.tenants)

    @property
    def full_name(self) -> str:
        return f"{self.space}/{self.name}"

    @property
    def num_samples(self) -> int:
        return 0 if self.latency_ms is None else int(self.latency_ms.shape[0])


def check_name(name: str, field_name: str = "name") -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArgument(
            f"'{name}' is not a valid device name (1-64 of A-Z a-z 0-9 . _ -, starting with a "
            "letter or digit)",
            field=field_name,
        )
    return name


@dataclass(frozen=True)
class Snapshot:
    """One immutable version of the device map. Later writes to the store never show here."""

    devices: Mapping[DeviceKey, Device] = field(default_factory=lambda: MappingProxyType({}))
    version: int = 0

    def get(self, space: str, name: str) -> Device | None:
        return self.devices.get((space, name))

    def list(self, space: str = "") -> list[Device]:
        """Devices of ``space`` (all if empty): by space, table devices first, then by name."""
        found = [d for d in self.devices.values() if not space or d.space == space]
        return sorted(found, key=lambda d: (d.space, d.source != TABLE, d.name))

    def __contains__(self, key: object) -> bool:
        return key in self.devices

    def __len__(self) -> int:
        return len(self.devices)

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices.values())


class DeviceStore:
    """Table and registered devices of the served spaces; copy-on-write, registry-backed."""

    def __init__(
        self,
        models: Mapping[str, LatencyModel],
        registry: Registry | None = None,
        *,
        max_measurements: int = 10_000,
    ) -> None:
        self.models = dict(models)
        self.registry = registry
        self.max_measurements = max_measurements
        self._lock = threading.Lock()
        devices: dict[DeviceKey, Device] = {}
        for space, model in self.models.items():
            # a space with no table has a transferred basis (predictor.cross_space): a basis
            # only, never served as devices (its zero-shot quality there is unknown)
            served = set(model.space.table.devices)
            for name in model.basis_devices:
                if name in served:
                    devices[(space, name)] = Device(space, name, TABLE, model.basis_head(name))
        self._snapshot = Snapshot(MappingProxyType(devices), 0)
        self._table_inputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._table_preds: dict[DeviceKey, TablePrediction] = {}
        self._poll_stop: threading.Event | None = None
        self._poller: threading.Thread | None = None
        #: run first by every ``sync`` (the space catalog: spaces other replicas registered
        #: must be served before their devices can be loaded); returns changes applied
        self.before_sync: Callable[[], int] | None = None
        self._update_gauges()

    @classmethod
    def in_memory(
        cls, models: Mapping[str, LatencyModel], devices: Iterable[Device] = ()
    ) -> DeviceStore:
        """A store without a registry (registrations fail, sync is a no-op) holding the
        table devices of ``models`` plus ``devices``."""
        store = cls(models)
        for device in devices:
            store.add_device(device)
        return store

    def install_model(self, space: str, model: LatencyModel) -> None:
        """Serve a new space (registered from a definition): no table devices."""
        with self._lock:
            models = dict(self.models)
            models[space] = model
            self.models = models

    # ---------------------------------------------------------------- lookup
    def model(self, space: str) -> LatencyModel:
        try:
            return self.models[space]
        except KeyError:
            served = ", ".join(self.models) or "none"
            raise SpaceNotFound(f"unknown search space '{space}' (served: {served})") from None

    def snapshot(self) -> Snapshot:
        """The current device map; hold it for a consistent view without locking."""
        return self._snapshot

    def device(self, space: str, name: str) -> Device:
        self.model(space)
        found = self._snapshot.get(space, name)
        if found is None:
            raise DeviceNotFound(f"unknown device '{space}/{name}'")
        return found

    def list_devices(self, space: str = "") -> list[Device]:
        if space:
            self.model(space)
        return self._snapshot.list(space)

    # ---------------------------------------------------------------- caches
    def table_inputs(self, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(basis, features, descriptors) of the space's bundled table archs, computed once."""
        inputs = self._table_inputs.get(space)
        if inputs is None:
            model = self.model(space)
            genes = model.space.table.genes
            features = model.features(genes)
            inputs = (model.basis(genes, features), features, model.descriptors(genes))
            self._table_inputs[space] = inputs
        return inputs

    def table_prediction(self, device: Device) -> TablePrediction:
        """``device``'s head over its space's whole table, computed once per head (the Rank
        fast path of covered spaces, CompareDevices and SuggestReferences)."""
        key = (device.space, device.name)
        tab = self._table_preds.get(key)
        if tab is not None and tab.head is device.head:
            return tab
        pred = device.head.predict(*self.table_inputs(device.space))
        lat32 = pred.latency_ms.astype(np.float32)
        tab = TablePrediction(
            device.head, pred.latency_ms, pred.log_sigma, lat32, dense_rank(lat32)
        )
        self._table_preds[key] = tab
        return tab

    # ---------------------------------------------------------------- writes
    def add_device(self, device: Device) -> Device:
        """Install ``device`` in memory only (not persisted), replacing one of the same name.

        For tests and tools. With a registry, the next ``sync`` drops a registered device
        the database does not hold.
        """
        self.model(device.space)
        self._swap(put=[device])
        return device

    def register(self, write: DeviceWrite) -> Device:
        """Register ``write``'s device: its head fit from the measurements, then persisted
        (``write.receipt``: a request id recorded with the write; its reply gets the Device).
        """
        check_name(write.name)
        self.model(write.space)
        if write.key in self._snapshot:
            raise AlreadyExists(f"device '{write.full_name}' already exists")
        head = self._fit(write.space, *write.measurements())
        write = write.map_receipt(lambda stored: self._as_device(stored, head))
        return self._install(self._require_registry().create(write), head)

    def add_measurements(self, write: DeviceWrite) -> Device:
        """Add ``write``'s measurements to a registered device and refit its head."""
        space = write.space
        genes, latency_ms = write.measurements()
        try:
            current = self.device(space, write.name)
        except DeviceNotFound:
            current = self._load_registered(space, write.name)
        if current.source == TABLE:
            raise FailedPrecondition(f"'{current.full_name}' is a table device; register a new one")
        assert current.genes is not None and current.latency_ms is not None
        all_genes = np.concatenate([current.genes, genes])
        all_lat = np.concatenate([current.latency_ms, latency_ms])
        heads = {all_lat.shape[0]: self._fit(space, all_genes, all_lat)}

        def head_of(stored: StoredDevice) -> HeadFit:
            n = stored.latency_ms.shape[0]
            if n not in heads:  # another replica added some too
                heads[n] = self._fit(space, stored.genes, stored.latency_ms)
            return heads[n]

        write = write.map_receipt(lambda stored: self._as_device(stored, head_of(stored)))
        stored = self._require_registry().add_measurements(write)
        return self._install(stored, head_of(stored))

    def delete(self, write: DeviceWrite) -> bool:
        """Delete ``write``'s registered device; False if neither the registry nor this
        store had it."""
        self.model(write.space)
        current = self._snapshot.get(*write.key)
        if current is not None and current.source == TABLE:
            raise FailedPrecondition(f"'{current.full_name}' is a table device (not deletable)")
        write = write.map_receipt(lambda found: bool(found) or current is not None)
        deleted = self._require_registry().delete(write)
        removed = self._swap(drop={write.key: None})
        return deleted or bool(removed)

    def _load_registered(self, space: str, name: str) -> Device:
        """A device registered through another replica that this one has not polled yet:
        loaded from the registry now, so a write right after a registration elsewhere
        succeeds (DeviceNotFound if the registry does not have it either)."""
        stored = self._require_registry().load(space, name)
        return self._install(stored, self._fit(space, stored.genes, stored.latency_ms))

    def load_registered(self) -> int:
        """Fit heads for every registered device in the database (start-up)."""
        if self.registry is None:
            return 0
        count = 0
        for stored in self.registry.load_all():
            if stored.space not in self.models:
                continue
            try:
                self._install(stored, self._fit(stored.space, stored.genes, stored.latency_ms))
                count += 1
            except Exception:
                log.exception("could not load device %s/%s", stored.space, stored.name)
        return count

    # ------------------------------------------------------------ replicas
    def sync(self) -> int:
        """Pick up registrations/deletions by other replicas; returns changes applied."""
        if self.registry is None:
            return 0
        changes = self.before_sync() if self.before_sync is not None else 0
        # Local state first: a device registered here after the database snapshot is not in
        # it and must not be mistaken for one deleted elsewhere (read-your-writes).
        local = {k: d for k, d in self._snapshot.devices.items() if d.source == REGISTERED}
        remote = self.registry.snapshot_revisions()
        for key, rev in remote.items():
            current = local.get(key)
            if key[0] in self.models and (current is None or current.revision != rev):
                try:
                    stored = self.registry.load(*key)
                    self._install(stored, self._fit(stored.space, stored.genes, stored.latency_ms))
                    changes += 1
                except NotFound:
                    continue
        gone = {k: d for k, d in local.items() if k not in remote}
        if gone:
            changes += len(gone)
            self._swap(drop=gone)
        return changes

    def start_polling(
        self, interval_s: float, stop: threading.Event | None = None
    ) -> threading.Thread:
        """``sync()`` every ``interval_s`` on a daemon thread until ``stop`` is set (or
        ``stop_polling``). Failures are logged and the store keeps serving from memory."""
        if self._poller is not None and self._poller.is_alive():
            raise RuntimeError("the store is already polling")
        self._poll_stop = stop if stop is not None else threading.Event()
        self._poller = threading.Thread(
            target=self._poll,
            args=(interval_s, self._poll_stop),
            name="oracle-sync",
            daemon=True,
        )
        self._poller.start()
        return self._poller

    def stop_polling(self, timeout_s: float | None = 5.0) -> None:
        if self._poll_stop is not None:
            self._poll_stop.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(timeout_s)

    def _poll(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            try:
                changes = self.sync()
                if changes:
                    log.info("registry sync", extra={"changes": changes})
            except Exception as exc:  # keep serving from memory
                log.warning("registry sync failed: %s", exc)

    # ------------------------------------------------------------- internals
    def _fit(self, space: str, genes: np.ndarray, latency_ms: np.ndarray) -> HeadFit:
        if genes.shape[0] > self.max_measurements:
            raise LimitExceeded(
                f"{genes.shape[0]} measurements exceed the limit of {self.max_measurements}"
            )
        t0 = time.perf_counter()
        try:
            head = self.model(space).fit_head(genes, latency_ms)
        except (InvalidArgument, LimitExceeded):
            raise
        except Exception as exc:
            metrics.HEAD_FIT_FAILURES.inc()
            log.exception("head fit failed for space %s", space)
            raise FailedPrecondition(f"could not fit a head from the measurements: {exc}") from exc
        metrics.HEAD_FIT_SECONDS.observe(time.perf_counter() - t0)
        return head

    def _require_registry(self) -> Registry:
        if self.registry is None:
            raise FailedPrecondition("this server has no device registry (read-only)")
        return self.registry

    @staticmethod
    def _as_device(stored: StoredDevice, head: HeadFit) -> Device:
        return Device(
            stored.space,
            stored.name,
            REGISTERED,
            head,
            stored.contract,
            stored.revision,
            stored.created_at,
            stored.updated_at,
            stored.genes,
            stored.latency_ms,
            stored.owner,
        )

    def _install(self, stored: StoredDevice, head: HeadFit) -> Device:
        device = self._as_device(stored, head)
        self._swap(put=[device], newer_only=True)
        return device

    def _swap(
        self,
        put: Iterable[Device] = (),
        drop: Mapping[DeviceKey, Device | None] | None = None,
        newer_only: bool = False,
    ) -> int:
        """Replace the snapshot with a copy that has ``put`` installed and ``drop`` removed.

        ``newer_only``: keep an installed device of a higher revision (a concurrent write
        got there first). ``drop`` maps key -> the device expected there (None: whatever is
        there); a device replaced meanwhile stays. Returns how many devices were dropped.
        """
        dropped = 0
        with self._lock:
            devices = dict(self._snapshot.devices)
            for d in put:
                key = (d.space, d.name)
                old = devices.get(key)
                if not newer_only or old is None or old.revision <= d.revision:
                    devices[key] = d
            for key, expected in (drop or {}).items():
                if key in devices and (expected is None or devices[key] is expected):
                    del devices[key]
                    self._table_preds.pop(key, None)
                    dropped += 1
            self._snapshot = Snapshot(MappingProxyType(devices), self._snapshot.version + 1)
        self._update_gauges()
        return dropped

    def _update_gauges(self) -> None:
        counts: dict[tuple[str, str], int] = {
            (sp, src): 0 for sp in self.models for src in (TABLE, REGISTERED)
        }
        for d in self._snapshot:
            counts[(d.space, d.source)] = counts.get((d.space, d.source), 0) + 1
        for (sp, src), value in counts.items():
            metrics.DEVICES.labels(sp, src).set(value)
