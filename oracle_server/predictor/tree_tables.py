"""Exact lookup-table form of the LightGBM proxy, for the open spaces (FBNet, OFA, ...).

The proxy predicts ``log latency = features @ w + sum_t tree_t(features)`` per basis device,
with trees of at most 4 leaves (3 splits). Every feature is a function of a few *discrete
variables* of the architecture:

* a one-hot feature ``(gene j, choice c)`` of gene ``j``'s *effective* value (the gene, or
  one extra value for "inactive": OFA zeroes the one-hot of blocks beyond a stage's depth);
* a non-one-hot ("extra") feature (log FLOPs, log params, resolution) only through which side
  of each split threshold it falls: its *bin* among the sorted thresholds the trees use on it
  (LightGBM's ``max_bin`` bounds their number).

So each tree is a function of at most 3 variables. Trees are grouped by the set of variables
they read (a group whose set is inside another's joins it) and each group is tabulated over
the joint values of its variables: the prediction becomes

    log b_k(x) = extra(x) @ w_extra[:, k] + w0_k + sum_g T_{g,k}[code_g(x)]

(the one-hot part of the linear model folds into the tables too): a gather-sum per
architecture instead of walking 300 trees, and no one-hot feature matrix at all.

The tables are built from the boosters' own tree dumps, checked against ``Booster.predict`` on
random and table architectures (relative 1e-9 on latency) and saved as ``.npz`` beside the
proxy; a proxy whose trees use anything else (categorical splits, zero-as-missing on an
extra feature, features this module cannot reproduce exactly) keeps the reference path.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TABLES_FORMAT_VERSION = 1
TABLES_FILE = "tree_tables.npz"
VERIFY_RTOL = 1e-9
_ZERO = 1e-35  # LightGBM's kZeroThreshold


class Unsupported(ValueError):
    """The proxy uses something the table form cannot reproduce exactly."""


# ----------------------------------------------------------------- variables
def inactive_mask(space, genes: np.ndarray) -> np.ndarray | None:
    """(n, g) bool: genes whose one-hot the space's features zero (None: none can be; a
    space from a definition with ``features: {inactive: zero}``, as OFA's, zeroes the genes
    of blocks past their stage's depth)."""
    zeroed = getattr(space, "zeroed_genes", None)
    return None if zeroed is None else zeroed(genes)


def position_costs(space) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, float, float] | None:
    """A space from a definition whose every block position reads one gene of one
    cardinality, no global or depth choice (FBNet; ``DefinedSpace.single_gene_positions``):
    (gene of each position (P,), cardinality, MACs (P, card), params (P, card), fixed MACs,
    fixed params); None for any other space."""
    layout = getattr(space, "single_gene_positions", None)
    if layout is None:
        return None
    pos_gene, card = layout
    flat, fixed = space._cost_tables  # rows position * card + value, then a zero row
    rows = flat[: len(pos_gene) * card]
    return (pos_gene, card, rows[:, 0].reshape(-1, card), rows[:, 1].reshape(-1, card),
            float(fixed[0, 0]), float(fixed[0, 1]))


def staged_costs(space) -> tuple | None:
    """A space from a definition laid out as OFA-MobileNetV3 (``DefinedSpace.
    staged_positions``) whose features zero inactive blocks and add the input area: (the
    layout, MACs (R * P * a * b,), params, fixed MACs (R,), fixed params (R,), the area per
    resolution (R,) float32); None for any other space."""
    layout = getattr(space, "staged_positions", None)
    if layout is None or getattr(space, "resolution_area", None) is None:
        return None
    res_gene = space._res_gene
    probe = np.zeros((len(space.definition.resolutions), space.num_genes), dtype=np.int64)
    probe[:, res_gene] = np.arange(len(probe))
    area = space.resolution_area(probe)
    if area is None or space.zeroed_genes(probe) is None:
        return None
    flat, fixed = space._cost_tables  # rows ((res * P + p) * a + g1) * b + g2, a zero row
    rows = flat[:-1]
    return (layout, rows[:, 0], rows[:, 1], np.ascontiguousarray(fixed[:, 0]),
            np.ascontiguousarray(fixed[:, 1]), area)


def flops_params(space, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``space.flops(genes), space.params(genes)``, bit for bit, with flat ``take`` gathers
    (several times faster than the spaces' 2-D fancy indexing; FBNet's costs are integers,
    so the pairwise sums equal the spaces' own). ``check_features`` compares them with the
    spaces' own at build time."""
    g = genes.astype(np.int64)
    simple = position_costs(space)
    if simple is not None:
        pos_gene, card, macs, params, fixed_m, fixed_p = simple
        if not np.array_equal(pos_gene, np.arange(g.shape[1])):
            g = g[:, pos_gene]
        idx = g + np.arange(len(pos_gene), dtype=np.int64) * card
        return (fixed_m + np.take(macs.ravel(), idx).sum(axis=1),
                fixed_p + np.take(params.ravel(), idx).sum(axis=1))
    staged = staged_costs(space)
    if staged is not None:
        (k_gene, e_gene, nk, ne, dep_pos, dep_gene, depth_of), macs, params, fm, fp, _ = staged
        res = g[:, space._res_gene]
        nb = len(k_gene)
        idx = ((res[:, None] * nb + np.arange(nb)) * nk + g[:, k_gene]) * ne + g[:, e_gene]
        active = depth_of[g[:, dep_gene]] > dep_pos
        return (fm[res] + (np.take(macs, idx) * active).sum(axis=1),
                fp[res] + (np.take(params, idx) * active).sum(axis=1))
    return space.flops(genes), space.params(genes)


def extra_features(space, genes: np.ndarray) -> np.ndarray:
    """(n, C) float32: the non-one-hot features, as ``space.features`` computes them."""
    flops, params = flops_params(space, genes)
    n = len(genes)
    area_of = getattr(space, "resolution_area", None)  # a space from a definition
    area = area_of(genes) if area_of is not None else None
    if area is not None:  # OFA's (resolution / 224) ** 2
        out = np.empty((n, 3), dtype=np.float32)
        out[:, 0] = area
    else:
        out = np.empty((n, 2), dtype=np.float32)
    out[:, -2] = np.log1p(flops)
    out[:, -1] = np.log1p(params)
    return out


def effective_genes(space, genes: np.ndarray) -> np.ndarray:
    """(n, g) int32 gene values, ``cardinality`` where the gene's one-hot is zeroed."""
    eff = genes.astype(np.int32)
    mask = inactive_mask(space, genes)
    if mask is not None:
        eff = np.where(mask, space.cardinalities[None, :].astype(np.int32), eff)
    return eff


def check_features(space, genes: np.ndarray) -> None:
    """Raise ``Unsupported`` unless (effective genes, extra features) rebuild
    ``space.features`` bit for bit."""
    feats = space.features(genes)
    n_oh = int(space.cardinalities.sum())
    eff = effective_genes(space, genes)
    onehot = np.zeros((len(genes), n_oh + 1), dtype=np.float32)
    offsets = space._one_hot_offsets
    cols = np.where(eff < space.cardinalities[None, :], eff + offsets[None, :], n_oh)
    onehot[np.arange(len(genes))[:, None], cols] = 1.0
    rebuilt = np.concatenate([onehot[:, :n_oh], extra_features(space, genes)], axis=1)
    if rebuilt.shape != feats.shape or not np.array_equal(rebuilt, feats):
        raise Unsupported(f"features of space '{space.name}' are not one-hot + extra features")


# -------------------------------------------------------------------- kernel
def _gather_sum_numpy(xt, groups, luts, lut, offsets, table, out):
    for g in range(groups.shape[0]):
        code = offsets[g] + lut[luts[g, 0] + xt[groups[g, 0]]]
        code += lut[luts[g, 1] + xt[groups[g, 1]]]
        code += lut[luts[g, 2] + xt[groups[g, 2]]]
        out += table[code]


#: the numba kernels (``_tree_kernel``) once loaded; until then (None) numpy serves: the same
#: variables, the same table cells added in the same order (bit-identical, tested)
_KERNELS = None
_KERNEL_LOCK = threading.Lock()
_KERNEL_READY = threading.Event()
_KERNEL_STARTED = False


def _load_kernel() -> None:
    global _KERNELS
    try:
        from oracle_server.predictor import _tree_kernel as k

        # compile (or load from the on-disk cache) the one signature each kernel is called
        # with (int16 genes, uint8 variables, contiguous arrays): every compiled
        # specialisation stays resident (LLVM code), so no others are loaded
        g3 = np.zeros((1, 3), dtype=np.int32)
        m3 = np.zeros((1, 3), dtype=np.int64)
        i1 = np.zeros(1, np.int64)
        genes = np.zeros((1, 1), np.int16)
        k.gather_sum_mixed(np.zeros((1, 1), np.uint8), g3, m3, i1, np.zeros(1, np.int32),
                           i1, np.zeros(1), np.zeros(1))
        xt = np.zeros((3, 1), np.uint8)
        k.cost_sums(genes, i1, 1, -1, 1, i1, i1, 1, i1, i1, i1, np.zeros((1, 2)), np.zeros(1),
                    np.zeros(1), i1, np.zeros((2, 1)), xt)
        k.fill_bins(np.zeros((1, 1), np.float32), np.zeros(1), np.array([0, 1], np.int64), xt, 1)
        _KERNELS = k
    except Exception:  # pragma: no cover - numba is a dependency; numpy serves meanwhile
        log.exception("numba kernel unavailable: tree tables use the (slower) numpy gather")
    finally:
        _KERNEL_READY.set()


def start_kernel(wait: bool = False) -> None:
    """Load the numba kernels in a background thread (importing numba and loading the cached
    machine code takes seconds on a busy machine: the server answers with the numpy path,
    which computes the same cells and adds in the same order, until they are ready).
    ``wait``: block until done."""
    global _KERNEL_STARTED
    with _KERNEL_LOCK:
        if not _KERNEL_STARTED:
            _KERNEL_STARTED = True
            threading.Thread(target=_load_kernel, name="tree-kernel", daemon=True).start()
    if wait:
        _KERNEL_READY.wait()


_THREADS = 1
_POOL: ThreadPoolExecutor | None = None
_PARALLEL_MIN = 8_192  # (architectures x columns) below which one thread does it all


def set_threads(threads: int) -> None:
    """Threads that evaluate one call's tables (the kernel releases the GIL): columns, or
    halves of the batch for one column, run in parallel. 1: the calling thread only."""
    global _THREADS, _POOL
    threads = max(1, int(threads))
    if threads != _THREADS:
        old, _POOL = _POOL, (ThreadPoolExecutor(threads - 1, thread_name_prefix="tree-tables")
                             if threads > 1 else None)
        _THREADS = threads
        if old is not None:
            old.shutdown(wait=False)


# ------------------------------------------------------------ fused variables
def _side_by_side(macs: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(N, 2) float64: the flattened MACs and params tables as columns."""
    return np.ascontiguousarray(np.stack([np.ravel(macs), np.ravel(params)], axis=1),
                                dtype=np.float64)


class _FusedSpec:
    """The arrays ``_tree_kernel.cost_sums`` / ``fill_bins`` read for one space."""

    def __init__(self, costs: tuple, res_gene: int, res_term: np.ndarray | None,
                 thresholds: list[np.ndarray]) -> None:
        self.costs = costs
        self.res_gene = res_gene
        self.res_term = res_term
        self.thr = np.concatenate([np.asarray(t, dtype=np.float64) for t in thresholds])
        self.thr_start = np.concatenate(
            [[0], np.cumsum([len(t) for t in thresholds])]).astype(np.int64)

    @classmethod
    def of(cls, tables: TreeTables) -> _FusedSpec | None:
        """The space's spec (one gene per block position as FBNet; OFA-MBv3's layout), None
        for a space the kernels do not know."""
        space = tables.space
        i64 = functools.partial(np.asarray, dtype=np.int64)
        cards = i64(space.cardinalities)
        simple = position_costs(space)
        if simple is not None:
            if len(tables.thresholds) != 2:
                return None
            pos_gene, card, macs, params, fixed_m, fixed_p = simple
            pos = np.arange(len(pos_gene), dtype=np.int64)
            costs = (i64(pos_gene), card, -1, 1, pos, pos, 1, pos, pos, i64([0]),
                     _side_by_side(macs, params), np.array([fixed_m], dtype=np.float64),
                     np.array([fixed_p], dtype=np.float64), cards)
            return cls(costs, -1, None, tables.thresholds)
        staged = staged_costs(space)
        if staged is not None:
            if len(tables.thresholds) != 3:
                return None
            (k_gene, e_gene, nk, ne, dep_pos, dep_gene, depth_of), macs, params, fm, fp, area = \
                staged
            blocks = np.arange(len(k_gene), dtype=np.int64)
            costs = (blocks, 0, space._res_gene, nk, k_gene, e_gene, ne, dep_pos, dep_gene,
                     depth_of, _side_by_side(macs, params), fm, fp, cards)
            return cls(costs, space._res_gene, area, tables.thresholds)
        return None


class _Buffers:
    """What one batch part's evaluation writes (``TreeTables._evaluate``)."""

    def __init__(self, tables: TreeTables, n: int) -> None:
        nc = len(tables.thresholds)
        self.xt = tables._xt(n)
        self.sums = np.empty((2, n))
        self.extra32 = np.empty((nc, n), dtype=np.float32)
        self.extra = np.empty((nc, n))
        self.tmp = np.empty(n)


# -------------------------------------------------------------------- tables
class TreeTables:
    """The proxy's log-latency as gather-sums over per-device lookup tables.

    Variables: ``g`` effective genes, then one global bin per extra feature, then a constant
    0. Device ``k`` reads ``groups[k]`` (G_k, 3) variable indices (padded with the constant);
    a cell of group ``i`` is ``offsets[k][i] + sum_s lut[k][luts[k][i, s] + value_s]``: the
    small ``lut`` turns gene values into strides and global bins into the group's own (few)
    bins, so tables stay small. ``w_extra`` (C, B) and ``w0`` (B,) are the linear part on the
    extra features.
    """

    def __init__(self, space, thresholds: list[np.ndarray], groups: list[np.ndarray],
                 luts: list[np.ndarray], lut: list[np.ndarray], offsets: list[np.ndarray],
                 tables: list[np.ndarray], w_extra: np.ndarray, w0: np.ndarray) -> None:
        self.space = space
        self.thresholds = thresholds
        self.groups = [np.ascontiguousarray(a, dtype=np.int32) for a in groups]
        self.luts = [np.ascontiguousarray(a, dtype=np.int32) for a in luts]
        self.lut = [np.ascontiguousarray(a, dtype=np.int32) for a in lut]
        self.offsets = [np.ascontiguousarray(a, dtype=np.int64) for a in offsets]
        self.tables = [np.ascontiguousarray(a, dtype=np.float64) for a in tables]
        self.w_extra = np.asarray(w_extra, dtype=np.float64)
        self.w0 = np.asarray(w0, dtype=np.float64)
        self._mixed: list[tuple | None] = [None] * len(self.tables)  # see _slots
        self._spec: _FusedSpec | None = None  # see _fused_ok
        self._fused_checked: bool | None = None

    @property
    def num_devices(self) -> int:
        return len(self.tables)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes + q.nbytes for t, q in zip(self.tables, self.lut, strict=True))

    # ------------------------------------------------------------- evaluate
    def variables(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(V, n) variable values (one row per variable; uint8 when they fit, ~12% faster
        gathers than int32) and (C, n) float64 extra features (one row per feature)."""
        return self._variables(_KERNELS, genes)

    def _variables(self, kernels, genes: np.ndarray,
                   buf: _Buffers | None = None) -> tuple[np.ndarray, np.ndarray]:
        if kernels is not None and self._fused_ok(kernels):
            return self._variables_fused(kernels, genes, buf)
        return self._variables_numpy(genes)

    def _xt(self, n: int) -> np.ndarray:
        small = int(self.space.cardinalities.max()) < 255 and all(
            len(t) < 255 for t in self.thresholds)
        return np.empty((self.space.num_genes + len(self.thresholds) + 1, n),
                        dtype=np.uint8 if small else np.int32)

    def _variables_numpy(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        extra = np.ascontiguousarray(extra_features(self.space, genes).T, dtype=np.float64)
        g = genes.shape[1]
        xt = self._xt(len(genes))
        xt[:g] = effective_genes(self.space, genes).T
        for i, thr in enumerate(self.thresholds):
            xt[g + i] = np.searchsorted(thr, extra[i], side="left")
        xt[-1] = 0
        return xt, extra

    def _variables_fused(self, kernels, genes: np.ndarray,
                         buf: _Buffers | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``_variables_numpy`` in two numba passes over the genes (the MACs / params sums in
        numpy's summation order with the effective genes; the bins) around numpy's
        ``log1p``, into ``buf`` (allocated here if None)."""
        spec = self._spec
        assert spec is not None
        genes = np.ascontiguousarray(genes, dtype=np.int16)  # the compiled signature
        b = _Buffers(self, len(genes)) if buf is None else buf
        kernels.cost_sums(genes, *spec.costs, b.sums, b.xt)
        np.log1p(b.sums, out=b.sums)
        nc = len(self.thresholds)
        if spec.res_term is not None:  # OFA's (resolution / 224) ** 2, as a 25-entry table
            np.take(spec.res_term, genes[:, spec.res_gene], out=b.extra32[0])
        b.extra32[nc - 2:] = b.sums  # float64 -> float32, as ``astype``
        kernels.fill_bins(b.extra32, spec.thr, spec.thr_start, b.xt, genes.shape[1])
        b.extra[...] = b.extra32
        return b.xt, b.extra

    def _fused_ok(self, kernels) -> bool:
        """Whether the fused variables equal ``_variables_numpy`` bit for bit here (checked
        once per tables object on 2,000 random + table architectures; numpy otherwise)."""
        ok = self._fused_checked
        if ok is None:
            ok = False
            try:
                self._spec = _FusedSpec.of(self)
                if self._spec is not None:
                    sp = self.space
                    genes = np.concatenate([sp.sample(2000, 12345), sp.table.genes[:2000]])
                    a, b = self._variables_fused(kernels, genes), self._variables_numpy(genes)
                    ok = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
                    if not ok:
                        log.warning("%s tree tables: fused variables differ from numpy's; "
                                    "numpy computes them", sp.name)
            except Exception:  # pragma: no cover - defensive: numpy serves
                log.exception("fused tree-table variables unavailable")
            self._fused_checked = ok
        return ok

    def _slots(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Device ``k``'s groups for ``gather_sum_mixed`` (cached): each group's variables
        with the gene / constant ones first and their strides (a gene's ``lut`` is
        ``value * stride``, checked), then the bins with their ``lut`` starts."""
        got = self._mixed[k]
        if got is None:
            g = self.space.num_genes
            const = g + len(self.thresholds)
            extra_value = inactive_mask(self.space, self.space.table.genes[:1]) is not None
            groups, luts, lut = self.groups[k], self.luts[k], self.lut[k]
            slots = np.empty_like(groups)
            mult = np.empty(groups.shape, dtype=np.int64)
            nlut = np.zeros(len(groups), dtype=np.int64)
            for i in range(len(groups)):
                muls, looks = [], []
                for v, start in zip(groups[i].tolist(), luts[i].tolist(), strict=True):
                    if v == const and lut[start] == 0:
                        muls.append((v, 0))
                        continue
                    if v < g:
                        card = int(self.space.cardinalities[v]) + int(extra_value)
                        stride = int(lut[start + 1]) if card > 1 else 0
                        if np.array_equal(lut[start : start + card],
                                          np.arange(card, dtype=np.int64) * stride):
                            muls.append((v, stride))
                            continue
                    looks.append((v, start))
                row = muls + looks
                slots[i] = [v for v, _ in row]
                mult[i] = [a for _, a in row]
                nlut[i] = len(looks)
            got = self._mixed[k] = (slots, mult, nlut)
        return got

    def log_basis(self, genes: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
        """(n, len(columns)) predicted log latency (log ms) of the basis ``columns``.

        With the numba kernels (they release the GIL) and ``set_threads(t > 1)``, a batch of
        at least ``_PARALLEL_MIN`` architectures x columns is cut into ``t`` ranges of
        architectures, each evaluated (variables and every column) by one thread: same
        values as one thread (each architecture's sums do not depend on the others)."""
        if not _KERNEL_STARTED:
            start_kernel()  # in the background; numpy serves meanwhile
        kernels = _KERNELS
        cols = list(range(self.num_devices)) if columns is None else list(columns)
        n = len(genes)
        out = np.empty((len(cols), n))
        pool, threads = _POOL, _THREADS
        if (kernels is None or pool is None or threads < 2 or n < 2 * threads
                or n * len(cols) < _PARALLEL_MIN):
            self._evaluate(kernels, genes, cols, out)
            return out.T
        step = -(-n // threads)
        # every buffer a part needs is allocated here, by the calling thread: a pool
        # thread allocating its own would grow a malloc arena of its own (resident memory)
        parts = [(kernels, genes[a : a + step], cols, out[:, a : a + step],
                  _Buffers(self, len(genes[a : a + step]))) for a in range(0, n, step)]
        futures = [pool.submit(self._evaluate, *part) for part in parts[1:]]
        self._evaluate(*parts[0])
        for f, part in zip(futures, parts[1:], strict=True):
            # a part no pool thread has started yet (the pool is busy with other calls'
            # parts under concurrent load) is done here: no call waits behind another
            if f.cancel():
                self._evaluate(*part)
            else:
                f.result()
        return out.T

    def _evaluate(self, kernels, genes: np.ndarray, cols: list[int], out: np.ndarray,
                  buf: _Buffers | None = None) -> None:
        """``out[j] = log basis column cols[j]`` (rows contiguous) for ``genes``."""
        xt, extra = self._variables(kernels, genes, buf)
        tmp = np.empty(len(genes)) if buf is None else buf.tmp
        for j, k in enumerate(cols):
            row = out[j]
            # the linear part on the extra features, element-wise (the same bits for any
            # batch size or split, unlike a BLAS product), then the tables' cells
            row.fill(0.0)
            for c in range(extra.shape[0]):
                np.multiply(extra[c], self.w_extra[c, k], out=tmp)
                row += tmp
            row += self.w0[k]
            if kernels is None:
                _gather_sum_numpy(xt, self.groups[k], self.luts[k], self.lut[k],
                                  self.offsets[k], self.tables[k], row)
            else:
                kernels.gather_sum_mixed(xt, *self._slots(k), self.lut[k], self.offsets[k],
                                         self.tables[k], row)

    # -------------------------------------------------------------- persist
    def save(self, path: Path) -> None:
        def cat(arrs: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrs) if arrs else np.zeros(0)

        np.savez(
            path, format_version=np.array(TABLES_FORMAT_VERSION),
            num_groups=np.array([len(a) for a in self.groups]),
            num_lut=np.array([len(a) for a in self.lut]),
            num_cells=np.array([len(a) for a in self.tables]),
            groups=cat(self.groups), luts=cat(self.luts), lut=cat(self.lut),
            offsets=cat(self.offsets), tables=cat(self.tables), w_extra=self.w_extra,
            w0=self.w0, num_thresholds=np.array([len(t) for t in self.thresholds], np.int64),
            thresholds=cat(self.thresholds),
        )

    @classmethod
    def load(cls, space, path: Path) -> TreeTables:
        with np.load(path, allow_pickle=False) as a:
            if int(a["format_version"]) != TABLES_FORMAT_VERSION:
                raise ValueError("tree tables format mismatch")

            def split(name: str, counts: str) -> list[np.ndarray]:
                return list(np.split(a[name], np.cumsum(a[counts])[:-1]))

            return cls(space, split("thresholds", "num_thresholds"),
                       split("groups", "num_groups"), split("luts", "num_groups"),
                       split("lut", "num_lut"), split("offsets", "num_groups"),
                       split("tables", "num_cells"), a["w_extra"], a["w0"])


# --------------------------------------------------------------------- build
def _walk(node: dict, out: list) -> None:
    if "leaf_value" in node:
        return
    out.append(node)
    _walk(node["left_child"], out)
    _walk(node["right_child"], out)


def build_tables(space, boosters: list, log_linear_weights: np.ndarray) -> TreeTables:
    """Tabulate ``boosters`` (one per basis device) + the log-linear part exactly."""
    start = time.perf_counter()
    g = space.num_genes
    cards = space.cardinalities.astype(np.int64)
    n_oh = int(cards.sum())
    gene_of = np.repeat(np.arange(g), cards)
    offsets_oh = space._one_hot_offsets
    inactive_possible = inactive_mask(space, space.table.genes[:1]) is not None
    var_cards = [int(c) for c in cards + (1 if inactive_possible else 0)]
    dumps = []
    for b in boosters:
        trees = []
        for t in b.dump_model()["tree_info"]:
            nodes: list = []
            _walk(t["tree_structure"], nodes)
            trees.append((t["tree_structure"], nodes))
        dumps.append(trees)
    w = np.asarray(log_linear_weights, dtype=np.float64)
    n_extra = w.shape[0] - 1 - n_oh
    thr_sets: list[set[float]] = [set() for _ in range(n_extra)]
    for trees in dumps:
        for _, nodes in trees:
            for nd in nodes:
                if nd["decision_type"] != "<=":
                    raise Unsupported(f"decision type {nd['decision_type']}")
                f = int(nd["split_feature"])
                if f >= n_oh:
                    if nd["missing_type"] == "Zero":
                        raise Unsupported("zero-as-missing split on a non-one-hot feature")
                    thr_sets[f - n_oh].add(float(nd["threshold"]))
    thresholds = [np.array(sorted(s), dtype=np.float64) for s in thr_sets]
    var_cards += [len(t) + 1 for t in thresholds] + [1]
    const = len(var_cards) - 1

    def variable_of(f: int) -> int:
        return int(gene_of[f]) if f < n_oh else g + (f - n_oh)

    def global_pos(nd: dict) -> int:  # index of an extra split's threshold among all
        f = int(nd["split_feature"])
        return int(np.searchsorted(thresholds[f - n_oh], float(nd["threshold"])))

    def go_left(nd: dict, vals: np.ndarray, local: dict[int, np.ndarray]) -> np.ndarray:
        f, thr = int(nd["split_feature"]), float(nd["threshold"])
        if f >= n_oh:  # local bin b: x above exactly b of the group's thresholds
            v = g + f - n_oh
            return vals[v] <= int(np.searchsorted(local[v], global_pos(nd)))
        j = gene_of[f]
        x = (vals[j] == f - offsets_oh[j]).astype(np.float64)
        left = x <= thr
        if nd["missing_type"] == "Zero":
            left = np.where(np.abs(x) <= _ZERO, bool(nd["default_left"]), left)
        return left

    def evaluate(nd: dict, vals: np.ndarray, local: dict[int, np.ndarray]) -> np.ndarray:
        if "leaf_value" in nd:
            return np.full(vals.shape[1], float(nd["leaf_value"]))
        return np.where(go_left(nd, vals, local), evaluate(nd["left_child"], vals, local),
                        evaluate(nd["right_child"], vals, local))

    all_groups, all_luts, all_lut, all_offsets, all_tables = [], [], [], [], []
    for k, trees in enumerate(dumps):
        sets = [frozenset(variable_of(int(nd["split_feature"])) for nd in nodes)
                for _, nodes in trees]
        if max((len(s) for s in sets), default=0) > 3:
            raise Unsupported("a tree reads more than 3 variables")
        kept: list[frozenset] = []
        for s in sorted({*sets, *(frozenset([j]) for j in range(g))},
                        key=lambda s: (-len(s), sorted(s))):
            if s and not any(s < q for q in kept):
                kept.append(s)
        if not kept:
            kept = [frozenset([0])]
        index = {s: i for i, s in enumerate(kept)}

        def home(s: frozenset, kept=kept, index=index) -> int:
            if s not in index:
                index[s] = min((i for i, q in enumerate(kept) if s <= q),
                               key=lambda i: int(np.prod([var_cards[v] for v in kept[i]])))
            return index[s]

        homes = [home(s) if s else 0 for s in sets]
        # each group's own thresholds (global positions) per extra variable
        local: list[dict[int, set[int]]] = [{v: set() for v in q if v >= g} for q in kept]
        for i, (_, nodes) in zip(homes, trees, strict=True):
            for nd in nodes:
                if int(nd["split_feature"]) >= n_oh:
                    local[i][variable_of(int(nd["split_feature"]))].add(global_pos(nd))
        local_arr = [{v: np.array(sorted(p), dtype=np.int64) for v, p in d.items()}
                     for d in local]
        lut: list[int] = [0]  # entry 0: the constant variable's zero
        groups = np.full((len(kept), 3), const, dtype=np.int64)
        luts = np.zeros((len(kept), 3), dtype=np.int64)
        grids, sizes = [], []
        for i, q in enumerate(kept):
            vs = sorted(q)
            groups[i, : len(vs)] = vs
            c = [var_cards[v] if v < g else len(local_arr[i][v]) + 1 for v in vs]
            for p, v in enumerate(vs):
                stride = int(np.prod(c[p + 1 :]))
                luts[i, p] = len(lut)
                if v < g:
                    lut.extend(int(x) * stride for x in range(var_cards[v]))
                else:  # global bin -> the group's bin
                    gb = np.arange(var_cards[v])
                    lut.extend(int(x) * stride
                               for x in np.searchsorted(local_arr[i][v], gb, side="left"))
            vals = np.zeros((len(var_cards), int(np.prod(c))), dtype=np.int64)
            vals[vs] = np.indices(c).reshape(len(vs), -1)
            grids.append(vals)
            sizes.append(vals.shape[1])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        table = np.zeros(int(np.sum(sizes)))
        for j in range(g):  # one-hot linear weights of gene j
            i = home(frozenset([j]))
            v = grids[i][j]
            table[offsets[i] : offsets[i] + sizes[i]] += np.where(
                v < cards[j], w[offsets_oh[j] + np.minimum(v, cards[j] - 1), k], 0.0)
        for s, i, (tree, _) in zip(sets, homes, trees, strict=True):
            if not s:  # a single leaf: a constant, added once per architecture
                table[offsets[0] : offsets[0] + sizes[0]] += float(tree["leaf_value"])
                continue
            table[offsets[i] : offsets[i] + sizes[i]] += evaluate(tree, grids[i],
                                                                  local_arr[i])
        all_groups.append(groups)
        all_luts.append(luts)
        all_lut.append(np.array(lut, dtype=np.int64))
        all_offsets.append(offsets)
        all_tables.append(table)
    out = TreeTables(space, thresholds, all_groups, all_luts, all_lut, all_offsets, all_tables,
                     w[n_oh:-1], w[-1].copy())
    log.info("tabulated %s proxy: %d groups per device, %.1f MB, %.1f s", space.name,
             int(np.mean([len(q) for q in all_groups])), out.nbytes / 2**20,
             time.perf_counter() - start)
    return out


def verify(tables: TreeTables, reference, space, n_random: int = 2000, seed: int = 0) -> float:
    """Max relative latency difference between the tables and ``reference(features)`` (the
    proxy's ``predict``) on random and table architectures."""
    genes = np.concatenate([space.sample(n_random, seed), space.table.genes[:n_random]])
    ref = reference(space.features(genes))
    got = np.exp(tables.log_basis(genes))
    return float(np.max(np.abs(got - ref) / np.abs(ref)))
