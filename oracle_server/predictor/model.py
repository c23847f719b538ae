"""``LatencyModel``: one space's proxy + features + head fitting; ``build_model`` with cache.

Artifact (a directory, no pickles): ``model.json`` (format version, space, basis devices,
proxy configuration, config hash, per-device held-out-arch CV estimates), ``model.npz``
(cost matrix, NB-201 basis table) and the proxy's own directory ``proxy/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from client_sdk.errors import DeviceNotFound, InvalidArgument
from client_sdk.spaces import SearchSpace, Table, get_space
from client_sdk.spaces.descriptors import degenerate, descriptors
from oracle_server.predictor import cross_space
from oracle_server.predictor.head_fit import HeadFit
from oracle_server.predictor.heads import candidate_kinds, spearman
from oracle_server.predictor.heads.basis import Basis
from oracle_server.predictor.priors import DescriptorPrior, fit_prior
from oracle_server.predictor.proxy import (
    Proxy,
    ProxyConfig,
    read_meta,
    rows_hash,
    to_log,
    train_proxy,
    write_meta,
)
from oracle_server.predictor.references import suggest_references
from oracle_server.predictor.selection import select_head
from oracle_server.predictor.transferred_basis import TransferredBasis

MODEL_FORMAT_VERSION = 2  # 2: descriptor prior in model.npz
CV_FRACTION = 0.1  # archs the proxy never sees, for the basis devices' CV estimate
log = logging.getLogger(__name__)


def cost_matrix(space: SearchSpace) -> np.ndarray:
    """(F, K) linear maps from features to additive cost summaries.

    Columns: one per op *type* (one-hot columns sharing a choice label and choice set, so
    ``features @ col`` counts the positions using that op), then per-choice MACs and
    parameters (least squares of ``space.flops`` / ``space.params`` on the one-hot).
    """
    keys = [(ch, lab) for ch in space.choices for lab in ch]
    uniq = list(dict.fromkeys(keys))
    n_oh = len(keys)
    n_feat = space.features(space.table.genes[:1]).shape[1]
    groups = np.zeros((n_feat, len(uniq)))
    groups[np.arange(n_oh), [uniq.index(k) for k in keys]] = 1.0
    genes = space.sample(2000, 0)
    one_hot = np.c_[space.one_hot(genes).astype(np.float64), np.ones(len(genes))]
    cols = []
    for cost in (space.flops(genes), space.params(genes)):
        w = np.linalg.lstsq(one_hot, cost, rcond=None)[0][:-1]
        cols.append(np.r_[w, np.zeros(n_feat - n_oh)])
    return np.c_[groups, np.stack(cols, axis=1)]


class LatencyModel:
    """One per space: the proxy + features, immutable after build."""

    def __init__(
        self,
        space: SearchSpace,
        proxy: Proxy,
        costs: np.ndarray,
        basis_cv: dict[str, tuple[float, float]],
        basis_table: np.ndarray | None = None,
        prior: DescriptorPrior | None = None,
        transferred: TransferredBasis | None = None,
    ) -> None:
        self.space = space
        self.proxy = proxy
        self.basis_devices: tuple[str, ...] = proxy.devices
        self.cost_matrix = costs
        self.basis_cv = basis_cv  # device -> (held-out-arch Spearman, log RMSE)
        self._basis_table = basis_table  # (n_table, B) for spaces fully in the table
        self.prior = prior  # descriptor prior learned from the basis devices
        #: a space with no table: the basis columns' own models (``transferred_basis``),
        #: which ``basis`` evaluates instead of the proxy trained on them
        self.transferred = transferred
        if transferred is not None and transferred.devices != self.basis_devices:
            raise ValueError("transferred basis devices differ from the proxy's")

    def features(self, genes: np.ndarray) -> np.ndarray:
        return self.space.features(genes)

    def descriptors(self, genes: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
        """(n, D) hardware-agnostic descriptors (``spaces.descriptors``); with ``matrix``
        (D, P) their combinations ``descriptors @ matrix`` (n, P), folded into the tables."""
        return descriptors(self.space.name, genes, matrix)

    @functools.cached_property
    def num_descriptors(self) -> int:
        return int(self.descriptors(self.space.table.genes[:1]).shape[1])

    @functools.cached_property
    def num_features(self) -> int:
        return int(self.features(self.space.table.genes[:1]).shape[1])

    @property
    def projects_features(self) -> bool:
        """Whether ``features_projected`` can skip the feature matrix: the proxy's tree
        tables checked (at build) that the features are the one-hot of the effective genes
        followed by the extra features."""
        return self.proxy.tables is not None

    def features_projected(self, genes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """``features(genes) @ matrix`` (n, q) without the (n, F) features: one gather per
        gene position of ``matrix``'s one-hot rows (a zero row for an inactive gene) plus
        the extra features times their rows (the tree tables' variables). Equal to float
        rounding (``projects_features`` must hold)."""
        tables = self.proxy.tables
        assert tables is not None
        xt, extra = tables.variables(genes)
        cards = self.space.cardinalities.astype(np.int64)
        offsets = self.space._one_hot_offsets
        n_oh = int(cards.sum())
        m = np.asarray(matrix, dtype=np.float64)
        out = extra.T @ m[n_oh:]
        zero = np.zeros((1, m.shape[1]))
        for j in range(len(cards)):
            rows = np.concatenate([m[offsets[j] : offsets[j] + cards[j]], zero])
            out += rows.take(xt[j], axis=0)
        return out

    @property
    def basis_reads_features(self) -> bool:
        """False when ``basis`` computes from genes alone (tree tables, or the NB-201 table)."""
        return (self.proxy.tables is None and self._basis_table is None
                and self.transferred is None)

    def basis(
        self,
        genes: np.ndarray,
        features: np.ndarray | None = None,
        columns: Sequence[int] | None = None,
        reference: bool = False,
    ) -> np.ndarray:
        """(n, B) predicted latency (ms) on the basis devices, vectorised.

        ``columns``: the only basis columns the caller reads. With a LightGBM proxy only
        their tree models are evaluated (the others are left at 1.0 ms; none when
        ``columns`` is empty); the values of the
        columns computed are the same as without ``columns``. With the proxy's tree tables
        (``tree_tables.py``; open spaces) the columns come from table gather-sums instead of
        walking the trees (equal to 1e-9 relative, checked at build; ``features`` unused);
        ``reference=True`` forces the trees. A space with no table (``transferred``) reads
        its columns' own models instead of the proxy trained on them.
        """
        width = len(self.basis_devices)
        if columns is not None and not len(columns):  # no column read: no proxy at all
            # (a read-only view of ones: nothing to allocate or fill per request)
            return np.broadcast_to(np.float64(1.0), (len(genes), width))
        cols = sorted(set(columns)) if columns is not None else list(range(width))
        if self.transferred is not None and not reference and len(genes):
            return _spread(self.transferred.columns(self.space, genes, cols), cols, width)
        if self._basis_table is not None:
            rows = self.space.table_rows(genes)
            if np.all(rows >= 0):
                return self._basis_table[rows]
        tables = self.proxy.tables
        if tables is not None and not reference and len(genes):
            return _spread(np.exp(tables.log_basis(genes, cols)), cols, width)
        feats = self.features(genes) if features is None else features
        proxy = self.proxy
        if proxy.config.kind != "lgbm" or len(feats) == 0 or len(cols) == width:
            return proxy.predict(feats)
        x = np.ascontiguousarray(feats, dtype=np.float32)
        w = proxy.log_linear_weights
        base = x.astype(np.float64) @ w[:-1] + w[-1]  # all columns, as Proxy.predict_log
        out = np.ones_like(base)
        for c in cols:
            out[:, c] = np.exp(base[:, c] + proxy._models[c].predict(x, num_threads=1))
        return out

    @property
    def head_kinds(self) -> tuple[str, ...]:
        """Candidate heads of this space's devices (``heads.candidate_kinds``), read from the
        registry each time (a head kind registered later is a candidate too)."""
        return candidate_kinds(self.space.space_size, self.space.num_architectures)

    def fit_head(self, genes: np.ndarray, latency_ms: np.ndarray,
                 kinds: Sequence[str] | None = None) -> HeadFit:
        """Validate measurements, fit every candidate head (``kinds``: these instead, e.g. a
        study's ablation), average them (milliseconds)."""
        genes = self.space.validate(genes)
        y = _validate_latency(latency_ms, len(genes))
        repeat_var = repeat_log_variance(genes, y)
        repeat_rho = repeat_spearman(genes, y)
        genes, y = merge_duplicates(genes, y)
        feats = self.features(genes)
        return select_head(self.basis(genes, feats), feats, y, self.proxy.linear_weights,
                           self.cost_matrix, kinds=self.head_kinds if kinds is None else kinds,
                           descriptors=self.descriptors(genes), prior=self.prior,
                           repeat_log_var=repeat_var, repeat_spearman=repeat_rho)

    @functools.cached_property
    def _table_flops(self) -> np.ndarray:
        """FLOPs of the bundled table's architectures (every table device's baseline)."""
        return self.space.flops(self.space.table.genes)

    def basis_head(self, device: str) -> HeadFit:
        """Identity head on a basis (training) device, with the proxy's CV estimate."""
        if device not in self.basis_devices:
            raise DeviceNotFound(f"'{device}' is not a basis device of the {self.space.name} proxy")
        rho, rmse = self.basis_cv.get(device, (float("nan"), 0.0))
        k = self.basis_devices.index(device)
        flops_rho = spearman(self._table_flops, self.space.table.device_column(device))
        n = len(self.proxy.train_rows)
        return HeadFit(
            kind=Basis.name, num_samples=n, expected_spearman=rho,
            monotonicity=1.0, fit_seconds=0.0, params={"basis_index": k},
            sigma={"anchor": k, "n": 1e12, "u_mean": 0.0, "u_sxx": 1e12, "s": rmse},
            flops_spearman=flops_rho, quality="good", advised_samples=n,
        )

    def suggest_references(
        self, n: int, seed: int = 0, pool: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, g) genes to measure on a new device (spread over predicted quantiles).

        ``pool``: candidate genes (default: the space's bundled table).
        """
        if n < 1:
            raise InvalidArgument(f"must be >= 1, got {n}", field="n")
        pool = self.space.table.genes if pool is None else self.space.validate(pool)
        return suggest_references(pool, self.basis(pool), self.features(pool), n, seed)

    # ----------------------------------------------------------------- persist
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.proxy.save(path / "proxy")
        arrays = {"cost_matrix": self.cost_matrix}
        if self._basis_table is not None:
            arrays["basis_table"] = self._basis_table
        if self.prior is not None:
            arrays.update(self.prior.to_arrays())
        np.savez(path / "model.npz", **arrays)
        meta = {
            "space": self.space.name,
            "basis_devices": list(self.basis_devices),
            "proxy_config": self.proxy.config.to_dict(),
            "basis_cv": {d: list(v) for d, v in self.basis_cv.items()},
        }
        if self.transferred is not None:
            meta["transferred"] = self.transferred.to_params()
        write_meta(path / "model.json", MODEL_FORMAT_VERSION, meta)

    @classmethod
    def load(cls, path: Path) -> LatencyModel:
        path = Path(path)
        meta = read_meta(path / "model.json", "model", MODEL_FORMAT_VERSION)
        proxy = Proxy.load(path / "proxy")
        space = get_space(meta["space"])
        if proxy.tables is None and not space.table_covers_space:
            proxy.add_tables(path / "proxy")  # an artifact from before the tree tables
        with np.load(path / "model.npz", allow_pickle=False) as arrays:
            costs = arrays["cost_matrix"]
            table = arrays["basis_table"] if "basis_table" in arrays.files else None
            prior = (DescriptorPrior.from_arrays(arrays) if "prior_mu" in arrays.files
                     else None)
        cv = {d: (float(v[0]), float(v[1])) for d, v in meta["basis_cv"].items()}
        transferred = (TransferredBasis.from_params(meta["transferred"])
                       if "transferred" in meta else None)
        return cls(space, proxy, costs, cv, table, prior, transferred)


def _spread(values: np.ndarray, cols: list[int], width: int) -> np.ndarray:
    """(n, width) with ``values`` (n, len(cols)) in columns ``cols`` and 1.0 in the columns
    no head reads (``values`` itself when every column is read)."""
    if len(cols) == width:
        return values
    out = np.ones((len(values), width))
    out[:, cols] = values
    return out


def repeat_log_variance(genes: np.ndarray, y: np.ndarray) -> float:
    """Variance of one measurement's log latency around its architecture's mean log, pooled
    over the architectures measured more than once (0 when none is).

    Repeats taken in different passes (the onboarding's session check adds its pass) carry
    how much the device itself changes between measurements — speed shifts that no model
    of the architecture can predict — so the head's interval is widened by it."""
    _, inverse, counts = np.unique(genes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    rep = counts[inverse] > 1
    if not rep.any():
        return 0.0
    z = np.log(y[rep])
    groups = inverse[rep]
    means = np.bincount(groups, weights=z) / np.maximum(np.bincount(groups), 1)
    dof = int(rep.sum()) - len(np.unique(groups))
    return float(np.sum((z - means[groups]) ** 2) / max(dof, 1))


def repeat_spearman(genes: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """(Spearman between the first and the second measurement of every architecture measured
    more than once, how many such architectures); (nan, k) below ``MIN_REPEATED_ARCHS``.

    The measurements arrive in the order they were taken, so an onboarding's session check
    (the first set again in a later pass) makes this the device's between-pass retest: how
    well the device agrees with itself, which bounds how well any model can rank it."""
    _, first, inverse = np.unique(genes, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    later = np.ones(len(y), dtype=bool)
    later[first] = False  # every measurement but each architecture's first
    idx = np.flatnonzero(later)
    # the second measurement of each repeated architecture: its first "later" occurrence
    arch, pos = np.unique(inverse[idx], return_index=True)
    k = len(arch)
    if k < MIN_REPEATED_ARCHS:
        return float("nan"), k
    return spearman(y[first[arch]], y[idx[pos]]), k


#: fewer repeated architectures than this say too little about the device's retest
MIN_REPEATED_ARCHS = 5


def merge_duplicates(genes: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sample per distinct architecture (the median of its repeated measurements).

    Raises INVALID_ARGUMENT when fewer than 2 distinct architectures or fewer than 2
    distinct latencies remain: there is nothing to rank from.
    """
    uniq, inverse = np.unique(genes, axis=0, return_inverse=True)
    if len(uniq) < len(genes):
        inverse = inverse.reshape(-1)
        y = np.array([np.median(y[inverse == i]) for i in range(len(uniq))])
        genes = uniq
    if len(genes) < 2:
        raise InvalidArgument("the measurements name only 1 distinct architecture; need at "
                              "least 2", field="measurements")
    if np.unique(y).size < 2:
        raise InvalidArgument(f"all {len(y)} latencies are equal ({y[0]} ms): nothing to rank "
                              "from (check the timing code)", field="measurements")
    return genes, y


def _validate_latency(latency_ms: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
    if len(y) != n:
        raise InvalidArgument(f"{len(y)} latencies for {n} architectures", field="measurements")
    if n < 2:
        raise InvalidArgument(f"need at least 2 measurements, got {n}", field="measurements")
    bad = np.flatnonzero(~np.isfinite(y) | (y <= 0))
    if len(bad):
        i = int(bad[0])
        raise InvalidArgument(f"must be a positive finite number of milliseconds, got {y[i]}",
                              field=f"measurements[{i}].latency_ms")
    return y


def feature_fingerprint(space: str) -> str:
    """SHA-256 of the space's features on its first 256 table rows + the data checksums.

    Part of the cache key: a change of features, cost tables or bundled data never loads
    a stale proxy artifact.
    """
    from client_sdk.data import expected_checksums

    sp = get_space(space)
    digest = hashlib.sha256(np.ascontiguousarray(
        sp.features(sp.table.genes[:256]), dtype=np.float32).tobytes())
    digest.update(json.dumps(expected_checksums(), sort_keys=True).encode())
    if not cross_space.has_table(sp):  # the transferred basis: its definition and method
        digest.update(cross_space.fingerprint(sp).encode())
    return digest.hexdigest()[:16]


def config_hash(space: str, devices: Sequence[str], config: ProxyConfig,
                exclude_rows: np.ndarray) -> str:
    blob = json.dumps({"v": MODEL_FORMAT_VERSION, "space": space, "devices": list(devices),
                       "config": config.to_dict(), "exclude": rows_hash(exclude_rows),
                       "cv": CV_FRACTION, "features": feature_fingerprint(space)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_atomically(model: LatencyModel, target: Path) -> None:
    """Write into a private folder, then rename it into place: concurrent builders (test
    workers, replicas sharing a cache volume) never expose or load a half-written model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process installed the same artifact first
            if not (target / "model.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_model(
    space: str,
    holdout_devices: Sequence[str] = (),
    cache_dir: Path | None = None,
    basis_devices: Sequence[str] | None = None,
    config: ProxyConfig | None = None,
    exclude_rows: np.ndarray | None = None,
) -> LatencyModel:
    """Train (or load from ``cache_dir``) the default proxy for ``space``.

    Basis devices: ``basis_devices`` or every table device not in ``holdout_devices``.
    ``exclude_rows``: table rows the proxy must never see (arch hold-out for evaluation).
    """
    sp = get_space(space)
    table = sp.table if cross_space.has_table(sp) else None  # None: transferred (lazily)
    order = sp.table.devices if table is not None else cross_space.transfer_devices()
    known = set(order)
    unknown = [d for d in (*holdout_devices, *(basis_devices or ())) if d not in known]
    if unknown:
        raise DeviceNotFound(f"unknown device(s) {unknown} for space '{space}'")
    devices = tuple(basis_devices) if basis_devices is not None else tuple(
        d for d in order if d not in set(holdout_devices))
    if not devices:
        raise InvalidArgument("no basis devices left to train on", field="basis_devices")
    config = config or ProxyConfig()
    exclude = np.unique(np.asarray(exclude_rows if exclude_rows is not None else [], np.int64))
    target = None
    if cache_dir is not None:
        target = Path(cache_dir) / f"{space}-{config_hash(space, devices, config, exclude)}"
        if (target / "model.json").exists():
            start = time.perf_counter()
            model = LatencyModel.load(target)
            log.info("loaded %s model from %s in %.2f s", space, target,
                     time.perf_counter() - start)
            return model
    if table is None:  # a space with no table: its basis transferred from the bundled ones
        transferred = cross_space.transferred(sp)
        table = cross_space.transfer_table(sp, basis=transferred)
        model = _train_model(sp, devices, config, exclude, table, transferred.subset(devices))
    else:
        model = _train_model(sp, devices, config, exclude, table)
    if target is not None:
        _save_atomically(model, target)
        log.info("cached %s model at %s", space, target)
    return model


def _train_model(sp: SearchSpace, devices: tuple[str, ...], config: ProxyConfig,
                 exclude: np.ndarray, table: Table,
                 transferred: TransferredBasis | None = None) -> LatencyModel:
    """``table``: the space's own, or (a space with no table) the basis transferred from
    the bundled spaces (``cross_space.transfer_table``), whose models ``transferred`` (for
    ``devices``) the model then serves."""
    start = time.perf_counter()
    # degenerate archs (NB-201 cells with a disconnected output) are pruned by some
    # runtimes (pixel3 / raspi4 report ~0.01 ms): kept out of the proxy and the prior
    allowed = np.setdiff1d(np.flatnonzero(~degenerate(sp.name, table.genes)), exclude)
    rng = np.random.default_rng(config.seed)
    cv_rows = np.sort(rng.choice(allowed, max(1, int(CV_FRACTION * len(allowed))), replace=False))
    train_rows = np.setdiff1d(allowed, cv_rows)
    feats = sp.features(table.genes)
    cols = [table.devices.index(d) for d in devices]
    log.info("training %s proxy on %d archs x %d devices", sp.name, len(train_rows), len(cols))
    proxy = train_proxy(sp.name, feats[train_rows], table.latency_ms[train_rows][:, cols],
                        devices, train_rows, config)
    pred = proxy.predict(feats[cv_rows])
    truth = table.latency_ms[cv_rows][:, cols]
    cv = {d: (spearman(pred[:, j], truth[:, j]),
              float(np.sqrt(np.mean((np.log(pred[:, j]) - to_log(truth[:, j])) ** 2))))
          for j, d in enumerate(devices)}
    # the whole space in the table (NAS-Bench-201's): serve the basis by row lookup
    basis_table = proxy.predict(feats) if sp.table_covers_space else None
    if basis_table is None:
        proxy.build_tables()  # the exact fast form of the trees (open spaces)
    prior = fit_prior(descriptors(sp.name, table.genes[train_rows]),
                      table.latency_ms[train_rows][:, cols])
    model = LatencyModel(sp, proxy, cost_matrix(sp), cv, basis_table, prior, transferred)
    log.info("built %s model in %.1f s", sp.name, time.perf_counter() - start)
    return model
