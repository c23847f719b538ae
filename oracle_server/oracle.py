"""The ranking pipeline: Rank, SuggestReferences, CompareDevices. No gRPC (numpy in/out).

``Oracle`` answers requests from a ``DeviceStore`` (``oracle_server.store``: the devices,
their heads, the registry and replica sync). Each request reads one store snapshot, so it
sees one consistent device map without locking. Device writes (register, add measurements,
delete) go to the store; the methods here only resolve request names to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from client_sdk.errors import DeadlineExceeded, DeviceNotFound, InvalidArgument, LimitExceeded
from client_sdk.spaces import SearchSpace
from client_sdk.spaces.defined_gather import shared_rows
from oracle_server import metrics
from oracle_server.comparison import Comparison, compare_devices
from oracle_server.predictor import LatencyModel, Prediction
from oracle_server.predictor.columns import basis_columns, reads_descriptors, reads_features
from oracle_server.predictor.heads import feature_projection, projection, stack_projections
from oracle_server.predictor.references import suggest_next
from oracle_server.priority import GATE, PriorityGate
from oracle_server.ranking import order
from oracle_server.store import Device, DeviceStore, Snapshot
from oracle_server.writes import DeviceWrite

if TYPE_CHECKING:
    from oracle_server.space_catalog import SpaceCatalog

PREDICT_CHUNK = 16_384  # rows per proxy evaluation on the general path


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


class Oracle:
    """Serves rankings for the table and registered devices of a ``DeviceStore``.

    ``table_fast_path``: answer Rank by table row in spaces whose table holds every
    architecture (NAS-Bench-201), from per-head predictions over the whole table; off, every
    request runs the proxy and heads on its genes (same results). ``predict_chunk``: rows per
    proxy evaluation on that general path. ``gate``: the priority of small Ranks over large
    ones (``oracle_server.priority``; default the process's ``GATE``).
    """

    def __init__(
        self,
        store: DeviceStore,
        *,
        max_batch: int = 1_000_000,
        max_devices_per_request: int = 64,
        table_fast_path: bool = True,
        predict_chunk: int = PREDICT_CHUNK,
        gate: PriorityGate | None = None,
    ) -> None:
        self.store = store
        self.gate = GATE if gate is None else gate
        #: spaces registered from definitions (``space_catalog.SpaceCatalog``; set by the app)
        self.catalog: SpaceCatalog | None = None
        self.max_batch = max_batch
        self.max_devices_per_request = max_devices_per_request
        self.predict_chunk = predict_chunk
        self.table_spaces = frozenset(
            sp for sp, m in store.models.items() if table_fast_path and m.space.table_covers_space
        )
        for dev in store.snapshot():  # warm the fast path's per-head table predictions
            if dev.space in self.table_spaces:
                store.table_prediction(dev)

    # ---------------------------------------------------------------- lookup
    @property
    def models(self) -> Mapping[str, LatencyModel]:
        return self.store.models

    def space(self, name: str) -> SearchSpace:
        return self.store.model(name).space

    def model(self, space: str) -> LatencyModel:
        return self.store.model(space)

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

    def device(self, name: str, space: str = "", snapshot: Snapshot | None = None) -> Device:
        sp, dev = self.split_name(name, space)
        self.store.model(sp)
        found = (snapshot if snapshot is not None else self.store.snapshot()).get(sp, dev)
        if found is None:
            raise DeviceNotFound(f"unknown device '{sp}/{dev}'")
        return found

    def list_devices(self, space: str = "") -> list[Device]:
        return self.store.list_devices(space)

    # ----------------------------------------------------- device writes (store)
    def resolve(self, write: DeviceWrite) -> DeviceWrite:
        """``write`` with a full ``'space/name'`` split into its space and name."""
        space, name = self.split_name(write.name, write.space)
        return write if (space, name) == write.key else write.replace(space=space, name=name)

    def register(self, write: DeviceWrite) -> Device:
        """Register a device (``write.name`` is a bare name in ``write.space``)."""
        return self.store.register(write)

    def add_measurements(self, write: DeviceWrite) -> Device:
        return self.store.add_measurements(self.resolve(write))

    def delete(self, write: DeviceWrite) -> bool:
        return self.store.delete(self.resolve(write))

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
        # A large call computes in chunks and lets small calls in flight go first before each
        # chunk (``oracle_server.priority``); a small call is counted while it runs.
        large = self.gate.is_large(n * len(devices))
        pace = self.gate.pace if large else None
        chunk = min(self.predict_chunk, self.gate.chunk) if large else self.predict_chunk
        with nullcontext() if large else self.gate.small_call():
            t0 = time.perf_counter()
            rows = None
            if space in self.table_spaces and n:
                rows = table_rows(model.space, genes, chunk, pace, is_cancelled)
                if rows.min() < 0:  # not canonical table genes: the general path
                    rows = None
            metrics.PROXY_CACHE.labels(space, "miss" if rows is None else "hit").inc(n)
            if rows is not None:
                tables = [self.store.table_prediction(d) for d in devices]
                t1 = time.perf_counter()
                metrics.rank_stage("proxy").observe(t1 - t0)
                _check_cancel(is_cancelled)
                lats = [tab.latency32[rows] for tab in tables]
                keys = [tab.rank[rows] for tab in tables]
                preds = [
                    Prediction(tab.latency_ms[rows], tab.log_sigma[rows])
                    if return_uncertainty
                    else None
                    for tab in tables
                ]
            else:
                preds = predict(model, genes, devices, is_cancelled, chunk, pace=pace)
                t1 = time.perf_counter()
                metrics.rank_stage("proxy").observe(t1 - t0)
                lats = [p.latency_ms.astype(np.float32) for p in preds]
                keys = [None] * len(devices)
            t2 = time.perf_counter()
            metrics.rank_stage("head").observe(t2 - t1)
            _check_cancel(is_cancelled)
            rankings = []
            for dev, lat, key, pred in zip(devices, lats, keys, preds, strict=True):
                if pace is not None:
                    pace()
                lower = upper = prob = None
                if return_uncertainty:
                    assert pred is not None
                    lo, hi = pred.interval(interval_level)
                    lower, upper = lo.astype(np.float32), hi.astype(np.float32)
                    if max_latency_ms is not None:
                        prob = pred.prob_below(max_latency_ms).astype(np.float32)
                indices = order(lat, top_k, max_latency_ms, key)
                rankings.append(DeviceRanking(dev, lat, indices, lower, upper, prob))
            metrics.rank_stage("rank").observe(time.perf_counter() - t2)
        metrics.RANK_ARCHITECTURES.labels(space).inc(n * len(devices))
        return RankResult(space, n, tuple(rankings), interval_level)

    def _rank_devices(self, space: str, names: Sequence[str]) -> list[Device]:
        if not names:
            raise InvalidArgument("name at least one device", field="devices")
        if len(names) > self.max_devices_per_request:
            raise LimitExceeded(
                f"{len(names)} devices exceed the limit of {self.max_devices_per_request} per Rank"
            )
        snapshot = self.store.snapshot()  # one device map for the whole request
        out = []
        for i, name in enumerate(names):
            try:
                out.append(self.device(name, space, snapshot))
            except InvalidArgument as exc:
                raise InvalidArgument(exc.message, field=f"devices[{i}]") from None
        return out

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
        basis, _, _ = self.store.table_inputs(space)
        log_sigma = self.store.table_prediction(dev).log_sigma  # cached per head
        measured = dev.genes if dev.genes is not None else model.space.table.genes[:0]
        return suggest_next(model.space.table.genes, basis, log_sigma, measured, n, seed)

    def compare(self, a: str, b: str, space: str = "") -> Comparison:
        snapshot = self.store.snapshot()
        da = self.device(a, space, snapshot)
        db = self.device(b, space, snapshot)
        if da.space != db.space:
            raise InvalidArgument(
                f"devices are in different spaces ({da.space}, {db.space})", field="b"
            )
        model = self.model(da.space)
        pa = self.store.table_prediction(da).latency_ms
        pb = self.store.table_prediction(db).latency_ms
        return compare_devices(model.space, da, db, pa, pb)


def predict(
    model: LatencyModel,
    genes: np.ndarray,
    devices: Sequence[Device],
    is_cancelled: Callable[[], bool] | None = None,
    chunk: int = PREDICT_CHUNK,
    project_inputs: bool = True,
    pace: Callable[[], object] | None = None,
) -> list[Prediction]:
    """Proxy once for all devices (only the basis columns their heads read), then heads.

    In chunks of ``chunk`` rows: bounded memory for big batches, and a client that gave up
    stops the work between chunks. ``project_inputs``: heads linear in a few descriptor
    and feature combinations get only those (folded gather-sums for all devices,
    ``input_projections``) instead of the (n, D) descriptors and (n, F) features; False:
    the reference. ``pace``: called before each chunk (a large Rank yielding to small ones,
    ``PriorityGate.pace``).
    """
    columns: set[int] | None = set()
    for d in devices:
        cols = basis_columns(d.head)
        columns = None if cols is None or columns is None else columns | cols
    wanted = None if columns is None else sorted(columns)
    feature_free = not any(reads_features(d.head) for d in devices)
    with_descriptors = any(reads_descriptors(d.head) for d in devices)
    projections = (
        input_projections(model, devices, feature_free)
        if project_inputs and (with_descriptors or not feature_free)
        else None
    )
    parts: list[list[Prediction]] = []
    for g in _chunks(genes, chunk, is_cancelled, pace, at_least_one=True):
        # the chunk's descriptors and MACs / params (proxy features) gather the same table
        # rows of a space from a definition: computed once (``defined_gather``)
        with shared_rows():
            parts.append(
                _predict_chunk(model, g, devices, wanted, feature_free, with_descriptors,
                               projections)
            )
    if len(parts) == 1:
        return parts[0]
    return [
        Prediction(
            np.concatenate([p[i].latency_ms for p in parts]),
            np.concatenate([p[i].log_sigma for p in parts]),
        )
        for i in range(len(devices))
    ]


def _predict_chunk(
    model: LatencyModel,
    g: np.ndarray,
    devices: Sequence[Device],
    wanted: list[int] | None,
    feature_free: bool,
    with_descriptors: bool,
    projections: tuple | None,
) -> list[Prediction]:
    """``predict`` of one chunk of genes (see there)."""
    features = None
    if model.basis_reads_features or not (feature_free or projections is not None):
        features = model.features(g)
    basis = model.basis(g, features, columns=wanted)
    if projections is not None:  # only the input combinations the heads read
        (dmat, dsl), (fmat, fsl) = projections
        u = model.descriptors(g, dmat) if dmat.shape[1] else np.empty((len(g), 0))
        uf = model.features_projected(g, fmat) if fmat.shape[1] else np.empty((len(g), 0))
        return [
            d.head.predict_projected(basis, uf[:, b], u[:, a])
            for d, a, b in zip(devices, dsl, fsl, strict=True)
        ]
    if features is None or feature_free:
        head_features = np.empty((g.shape[0], 0))  # not read: skip the float64 copy
    else:
        head_features = features.astype(np.float64)
    desc = model.descriptors(g) if with_descriptors else None
    return [d.head.predict(basis, head_features, desc) for d in devices]


def descriptor_projections(
    model: LatencyModel, devices: Sequence[Device]
) -> tuple[np.ndarray, list[slice]] | None:
    """All devices' descriptor combinations as one (D, P) matrix and each device's column
    slice of it; None when some head reads the descriptors otherwise."""
    n = model.num_descriptors
    return stack_projections([projection(d.head.kind, d.head.params, n) for d in devices], n)


def input_projections(
    model: LatencyModel, devices: Sequence[Device], feature_free: bool
) -> tuple[tuple[np.ndarray, list[slice]], tuple[np.ndarray, list[slice]]] | None:
    """``descriptor_projections`` and the same for the proxy features (all devices' feature
    combinations as one (F, Q) matrix, slices); None when some head has no projection, or
    when heads read features and the model cannot project them (no tree tables)."""
    desc = descriptor_projections(model, devices)
    if desc is None:
        return None
    if feature_free:
        empty = np.zeros((0, 0))
        return desc, (empty, [slice(0, 0)] * len(devices))
    if not model.projects_features:
        return None
    n = model.num_features
    feats = stack_projections(
        [feature_projection(d.head.kind, d.head.params, n) for d in devices], n
    )
    return None if feats is None else (desc, feats)


def table_rows(
    space: SearchSpace,
    genes: np.ndarray,
    chunk: int,
    pace: Callable[[], object] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> np.ndarray:
    """``space.table_rows(genes)``; with ``pace`` (a large Rank), ``chunk`` rows at a time
    with ``pace()`` before each chunk, concatenated (row-wise: the same rows)."""
    if pace is None:
        return space.table_rows(genes)
    return np.concatenate([space.table_rows(g) for g in _chunks(genes, chunk, is_cancelled, pace)])


def _chunks(
    genes: np.ndarray,
    chunk: int,
    is_cancelled: Callable[[], bool] | None,
    pace: Callable[[], object] | None,
    at_least_one: bool = False,
) -> Iterator[np.ndarray]:
    """``genes`` ``chunk`` rows at a time; between chunks the call stops if cancelled, and
    before each one a large call lets small calls go first (``pace``). ``at_least_one``:
    one (empty) chunk for no rows."""
    for start in range(0, max(genes.shape[0], int(at_least_one)), chunk):
        if start:
            _check_cancel(is_cancelled)
        if pace is not None:
            pace()
        yield genes[start : start + chunk]


def _check_cancel(is_cancelled: Callable[[], bool] | None) -> None:
    if is_cancelled is not None and is_cancelled():
        raise DeadlineExceeded("the client cancelled or its deadline passed; work stopped")
