"""The oracle's pipeline: devices, heads and batched ranking. No gRPC here (numpy in/out).

``Oracle`` holds one ``LatencyModel`` (proxy) per served space, the table devices of the
bundled data (identity heads on the proxy's basis outputs) and the registered devices (heads
fit from their measurements). Device maps are replaced copy-on-write under a lock, so the
Rank hot path reads them without locking.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from client_sdk.errors import (
    NAME_RE,
    AlreadyExists,
    DeadlineExceeded,
    DeviceNotFound,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    SpaceNotFound,
)
from client_sdk.spaces import SearchSpace
from oracle_server import metrics
from oracle_server.comparison import Comparison, compare_devices
from oracle_server.predictor import HeadFit, LatencyModel, Prediction
from oracle_server.predictor.columns import basis_columns, reads_descriptors, reads_features
from oracle_server.predictor.references import suggest_next
from oracle_server.ranking import TablePrediction, dense_rank, order
from oracle_server.registry import Registry, StoredDevice

log = logging.getLogger(__name__)

TABLE, REGISTERED = "table", "registered"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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

    @property
    def full_name(self) -> str:
        return f"{self.space}/{self.name}"

    @property
    def num_samples(self) -> int:
        return 0 if self.latency_ms is None else int(self.latency_ms.shape[0])


@dataclass(frozen=True)
class DeviceRanking:
    device: Device
    latency_ms: np.ndarray  # (n,) float32
    order: np.ndarray  # (m,) uint32 request indices, fastest first
    lower_ms: np.ndarray | None = None
    upper_ms: np.ndarray | None = None
    prob_within_budget: np.ndarray | None = None


@dataclass(frozen=True)
class RankResult:
    space: str
    num_architectures: int
    rankings: tuple[DeviceRanking, ...]
    interval_level: float


def check_name(name: str, field_name: str = "name") -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArgument(
            f"'{name}' is not a valid device name (1-64 of A-Z a-z 0-9 . _ -, starting with a "
            "letter or digit)",
            field=field_name,
        )
    return name


_PREDICT_CHUNK = 16_384  # rows per proxy evaluation on the general path


class Oracle:
    """Serves rankings for table and registered devices of the spaces it holds."""

    def __init__(
        self,
        models: Mapping[str, LatencyModel],
        registry: Registry | None = None,
        *,
        max_batch: int = 1_000_000,
        max_devices_per_request: int = 64,
        max_measurements: int = 10_000,
    ) -> None:
        self.models = dict(models)
        self.registry = registry
        self.max_batch = max_batch
        self.max_devices_per_request = max_devices_per_request
        self.max_measurements = max_measurements
        self._lock = threading.Lock()
        devices: dict[tuple[str, str], Device] = {}
        for space, model in self.models.items():
            for name in model.basis_devices:
                devices[(space, name)] = Device(space, name, TABLE, model.basis_head(name))
        self._devices = devices
        # Spaces whose table holds every architecture of the space (NAS-Bench-201): Rank
        # answers by table row from per-head predictions over the whole table.
        self._covered = {sp for sp, m in self.models.items() if _table_covers_space(m.space)}
        self._table_inputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._table_preds: dict[tuple[str, str], TablePrediction] = {}
        for (sp, _name), dev in devices.items():
            if sp in self._covered:
                self._table_prediction(self.models[sp], dev)
        self._update_gauges()

    # ---------------------------------------------------------------- lookup
    def space(self, name: str) -> SearchSpace:
        return self.model(name).space

    def model(self, space: str) -> LatencyModel:
        try:
            return self.models[space]
        except KeyError:
            served = ", ".join(self.models) or "none"
            raise SpaceNotFound(f"unknown search space '{space}' (served: {served})") from None

    def split_name(self, name: str, space: str = "") -> tuple[str, str]:
        """'space/dev' or ('dev', space) -> (space, dev)."""
        if "/" in name:
            sp, _, dev = name.partition("/")
            if space and sp != space:
                raise InvalidArgument(f"device '{name}' is not in space '{space}'", field="space")
            return sp, dev
        if not space:
            raise InvalidArgument(
                f"bare device name '{name}' needs a space (or use '<space>/{name}')", field="space"
            )
        return space, name

    def device(self, name: str, space: str = "") -> Device:
        sp, dev = self.split_name(name, space)
        self.model(sp)
        found = self._devices.get((sp, dev))
        if found is None:
            raise DeviceNotFound(f"unknown device '{sp}/{dev}'")
        return found

    def list_devices(self, space: str = "") -> list[Device]:
        if space:
            self.model(space)
        devices = [d for d in self._devices.values() if not space or d.space == space]
        return sorted(devices, key=lambda d: (d.space, d.source != TABLE, d.name))

    # ------------------------------------------------------------------ rank
    def rank(
        self,
        space: str,
        genes: np.ndarray,
        device_names: Sequence[str],
        *,
        top_k: int = 0,
        max_latency_ms: float | None = None,
        return_uncertainty: bool = False,
        interval_level: float = 0.8,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> RankResult:
        model = self.model(space)
        devices = self._rank_devices(space, device_names)
        if max_latency_ms is not None and not (np.isfinite(max_latency_ms) and max_latency_ms > 0):
            raise InvalidArgument("must be a positive finite number of ms", field="max_latency_ms")
        if not 0.0 < interval_level < 1.0:
            raise InvalidArgument("must be in (0, 1)", field="interval_level")
        n = genes.shape[0]
        if n > self.max_batch:
            raise LimitExceeded(f"{n} architectures exceed the limit of {self.max_batch} per Rank")
        t0 = time.perf_counter()
        rows = None
        if space in self._covered and n:
            rows = model.space.table_rows(genes)
            if rows.min() < 0:  # not canonical table genes: the general path
                rows = None
        if rows is not None:
            tables = [self._table_prediction(model, d) for d in devices]
            t1 = time.perf_counter()
            metrics.RANK_STAGE_SECONDS.labels("proxy").observe(t1 - t0)
            _check_cancel(is_cancelled)
            lats = [tab.latency32[rows] for tab in tables]
            keys = [tab.rank[rows] for tab in tables]
            preds = [
                Prediction(tab.latency_ms[rows], tab.log_sigma[rows]) if return_uncertainty
                else None
                for tab in tables
            ]
        else:
            preds = self._predict(model, genes, devices, is_cancelled)
            t1 = time.perf_counter()
            metrics.RANK_STAGE_SECONDS.labels("proxy").observe(t1 - t0)
            lats = [p.latency_ms.astype(np.float32) for p in preds]
            keys = [None] * len(devices)
        t2 = time.perf_counter()
        metrics.RANK_STAGE_SECONDS.labels("head").observe(t2 - t1)
        _check_cancel(is_cancelled)
        rankings = []
        for dev, lat, key, pred in zip(devices, lats, keys, preds, strict=True):
            lower = upper = prob = None
            if return_uncertainty:
                assert pred is not None
                lo, hi = pred.interval(interval_level)
                lower, upper = lo.astype(np.float32), hi.astype(np.float32)
                if max_latency_ms is not None:
                    prob = pred.prob_below(max_latency_ms).astype(np.float32)
            indices = order(lat, top_k, max_latency_ms, key)
            rankings.append(DeviceRanking(dev, lat, indices, lower, upper, prob))
        metrics.RANK_STAGE_SECONDS.labels("rank").observe(time.perf_counter() - t2)
        metrics.RANK_ARCHITECTURES.labels(space).inc(n * len(devices))
        return RankResult(space, n, tuple(rankings), interval_level)

    def _predict(
        self,
        model: LatencyModel,
        genes: np.ndarray,
        devices: Sequence[Device],
        is_cancelled: Callable[[], bool] | None = None,
    ) -> list[Prediction]:
        """Proxy once for all devices (only the basis columns their heads read), then heads.

        In chunks of ``_PREDICT_CHUNK`` rows: bounded memory for big batches, and a client
        that gave up stops the work between chunks.
        """
        columns: set[int] | None = set()
        for d in devices:
            cols = basis_columns(d.head)
            columns = None if cols is None or columns is None else columns | cols
        wanted = None if columns is None else sorted(columns)
        feature_free = not any(reads_features(d.head) for d in devices)
        with_descriptors = any(reads_descriptors(d.head) for d in devices)
        parts: list[list[Prediction]] = []
        for start in range(0, max(genes.shape[0], 1), _PREDICT_CHUNK):
            if start:
                _check_cancel(is_cancelled)
            g = genes[start : start + _PREDICT_CHUNK]
            features = None
            if not feature_free or model.basis_reads_features:
                features = model.features(g)
            basis = model.basis(g, features, columns=wanted)
            if features is None or feature_free:
                head_features = np.empty((g.shape[0], 0))  # not read: skip the float64 copy
            else:
                head_features = features.astype(np.float64)
            desc = model.descriptors(g) if with_descriptors else None
            parts.append([d.head.predict(basis, head_features, desc) for d in devices])
        if len(parts) == 1:
            return parts[0]
        return [
            Prediction(
                np.concatenate([p[i].latency_ms for p in parts]),
                np.concatenate([p[i].log_sigma for p in parts]),
            )
            for i in range(len(devices))
        ]

    def _table_prediction(self, model: LatencyModel, device: Device) -> TablePrediction:
        """``device``'s head over the whole table, computed once per head (the Rank fast
        path of covered spaces, and CompareDevices)."""
        key = (device.space, device.name)
        tab = self._table_preds.get(key)
        if tab is not None and tab.head is device.head:
            return tab
        pred = device.head.predict(*self._pool_inputs(model))
        lat32 = pred.latency_ms.astype(np.float32)
        tab = TablePrediction(device.head, pred.latency_ms, pred.log_sigma, lat32,
                               dense_rank(lat32))
        self._table_preds[key] = tab
        return tab

    def _pool_inputs(
        self, model: LatencyModel
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(basis, features, descriptors) of the space's bundled table archs, computed once."""
        inputs = self._table_inputs.get(model.space.name)
        if inputs is None:
            genes = model.space.table.genes
            features = model.features(genes)
            inputs = (model.basis(genes, features), features, model.descriptors(genes))
            self._table_inputs[model.space.name] = inputs
        return inputs

    def _rank_devices(self, space: str, names: Sequence[str]) -> list[Device]:
        if not names:
            raise InvalidArgument("name at least one device", field="devices")
        if len(names) > self.max_devices_per_request:
            raise LimitExceeded(
                f"{len(names)} devices exceed the limit of {self.max_devices_per_request} per Rank"
            )
        out = []
        for i, name in enumerate(names):
            try:
                out.append(self.device(name, space))
            except InvalidArgument as exc:
                raise InvalidArgument(exc.message, field=f"devices[{i}]") from None
        return out

    # -------------------------------------------------------------- registry
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

    def register(
        self, name: str, space: str, genes: np.ndarray, latency_ms: np.ndarray, contract: dict
    ) -> Device:
        check_name(name)
        self.model(space)
        if (space, name) in self._devices:
            raise AlreadyExists(f"device '{space}/{name}' already exists")
        head = self._fit(space, genes, latency_ms)
        stored = self._require_registry().create(space, name, genes, latency_ms, contract)
        return self._install(stored, head)

    def add_measurements(
        self, name: str, space: str, genes: np.ndarray, latency_ms: np.ndarray
    ) -> Device:
        current = self.device(name, space)
        if current.source == TABLE:
            raise FailedPrecondition(f"'{current.full_name}' is a table device; register a new one")
        assert current.genes is not None and current.latency_ms is not None
        all_genes = np.concatenate([current.genes, genes])
        all_lat = np.concatenate([current.latency_ms, latency_ms])
        head = self._fit(current.space, all_genes, all_lat)
        stored = self._require_registry().add_measurements(
            current.space, current.name, genes, latency_ms
        )
        if stored.latency_ms.shape[0] != all_lat.shape[0]:  # another replica added some too
            head = self._fit(current.space, stored.genes, stored.latency_ms)
        return self._install(stored, head)

    def delete(self, name: str, space: str = "") -> bool:
        sp, dev = self.split_name(name, space)
        self.model(sp)
        current = self._devices.get((sp, dev))
        if current is not None and current.source == TABLE:
            raise FailedPrecondition(f"'{current.full_name}' is a table device (not deletable)")
        deleted = self._require_registry().delete(sp, dev)
        with self._lock:
            devices = dict(self._devices)
            removed = devices.pop((sp, dev), None)
            self._devices = devices
        self._table_preds.pop((sp, dev), None)
        self._update_gauges()
        return deleted or removed is not None

    def _install(self, stored: StoredDevice, head: HeadFit) -> Device:
        device = Device(
            stored.space, stored.name, REGISTERED, head, stored.contract, stored.revision,
            stored.created_at, stored.updated_at, stored.genes, stored.latency_ms,
        )
        with self._lock:
            devices = dict(self._devices)
            old = devices.get((stored.space, stored.name))
            if old is None or old.revision <= device.revision:
                devices[(stored.space, stored.name)] = device
            self._devices = devices
        self._update_gauges()
        return device

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

    def sync(self) -> int:
        """Pick up registrations/deletions by other replicas; returns changes applied."""
        if self.registry is None:
            return 0
        # Local state first: a device registered here after the snapshot is not in it and
        # must not be mistaken for one deleted elsewhere (read-your-writes).
        local_devices = {k: d for k, d in self._devices.items() if d.source == REGISTERED}
        local = {k: d.revision for k, d in local_devices.items()}
        remote = self.registry.snapshot_revisions()
        changes = 0
        for key, rev in remote.items():
            if key[0] in self.models and local.get(key) != rev:
                try:
                    stored = self.registry.load(*key)
                    self._install(stored, self._fit(stored.space, stored.genes, stored.latency_ms))
                    changes += 1
                except NotFound:
                    continue
        gone = [k for k in local if k not in remote]
        if gone:
            with self._lock:
                devices = dict(self._devices)
                for k in gone:
                    if devices.get(k) is local_devices[k]:  # not replaced meanwhile
                        devices.pop(k)
                        self._table_preds.pop(k, None)
                self._devices = devices
            changes += len(gone)
        if changes:
            self._update_gauges()
        return changes

    def _update_gauges(self) -> None:
        counts: dict[tuple[str, str], int] = {
            (sp, src): 0 for sp in self.models for src in (TABLE, REGISTERED)
        }
        for d in self._devices.values():
            counts[(d.space, d.source)] = counts.get((d.space, d.source), 0) + 1
        for (sp, src), value in counts.items():
            metrics.DEVICES.labels(sp, src).set(value)

    # ----------------------------------------------------------------- other
    def suggest(self, space: str, n: int, seed: int = 0, device: str = "") -> np.ndarray:
        """References for a new device, or (``device`` given) the next architectures to
        measure on that device: the most uncertain under its head, spread out, excluding
        those it has measured (``suggest_next``), from the space's bundled table."""
        if not 1 <= n <= 1000:
            raise InvalidArgument("must be between 1 and 1000", field="n")
        model = self.model(space)
        if not device:
            return model.suggest_references(n, seed=seed)
        try:
            dev = self.device(device, space)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field="device") from None
        basis, _, _ = self._pool_inputs(model)
        log_sigma = self._table_prediction(model, dev).log_sigma  # cached per head
        measured = dev.genes if dev.genes is not None else model.space.table.genes[:0]
        return suggest_next(model.space.table.genes, basis, log_sigma, measured, n, seed)

    def compare(self, a: str, b: str, space: str = "") -> Comparison:
        da = self.device(a, space)
        db = self.device(b, space)
        if da.space != db.space:
            raise InvalidArgument(
                f"devices are in different spaces ({da.space}, {db.space})", field="b"
            )
        model = self.model(da.space)
        pa = self._table_prediction(model, da).latency_ms
        pb = self._table_prediction(model, db).latency_ms
        return compare_devices(model.space, da, db, pa, pb)


def _table_covers_space(space: SearchSpace) -> bool:
    """True when every gene vector of the space is exactly one row of its table."""
    if space.space_size != space.num_architectures:
        return False
    rows = space.table_rows(space.table.genes)
    return bool(rows.min() >= 0) and np.unique(rows).shape[0] == space.num_architectures


def _check_cancel(is_cancelled: Callable[[], bool] | None) -> None:
    if is_cancelled is not None and is_cancelled():
        raise DeadlineExceeded("the client cancelled or its deadline passed; work stopped")
