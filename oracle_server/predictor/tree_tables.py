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

This module holds ``TreeTables`` (evaluation, persistence) and the kernel / thread state;
the variables are computed in ``tree_features``, the tables built and verified in
``tree_build``, the numba kernels' arrays laid out in ``tree_fused`` (kernels:
``_tree_kernel``). The public names of those modules are re-exported here.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from client_sdk.spaces import defined_gather
from client_sdk.spaces.defined_gather import chunk_memo
from oracle_server.predictor.tree_build import VERIFY_RTOL, build_tables, verify
from oracle_server.predictor.tree_features import (
    Unsupported,
    check_features,
    effective_genes,
    extra_features,
    flops_params,
    inactive_mask,
    position_costs,
    staged_costs,
)
from oracle_server.predictor.tree_fused import Buffers, FusedSpec

__all__ = [
    "TABLES_FILE",
    "TABLES_FORMAT_VERSION",
    "VERIFY_RTOL",
    "TreeTables",
    "Unsupported",
    "build_tables",
    "check_features",
    "effective_genes",
    "extra_features",
    "flops_params",
    "inactive_mask",
    "position_costs",
    "set_threads",
    "staged_costs",
    "start_kernel",
    "verify",
]

log = logging.getLogger(__name__)

TABLES_FORMAT_VERSION = 1
TABLES_FILE = "tree_tables.npz"


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
        k.gather_sum_mixed(
            np.zeros((1, 1), np.uint8),
            g3,
            m3,
            i1,
            np.zeros(1, np.int32),
            i1,
            np.zeros(1),
            np.zeros(1),
        )
        xt = np.zeros((3, 1), np.uint8)
        k.cost_sums(
            genes,
            i1,
            1,
            -1,
            1,
            i1,
            i1,
            1,
            i1,
            i1,
            i1,
            np.zeros((1, 2)),
            np.zeros(1),
            np.zeros(1),
            i1,
            np.zeros((2, 1)),
            xt,
        )
        k.fill_bins(np.zeros((1, 1), np.float32), np.zeros(1), np.array([0, 1], np.int64), xt, 1)
        k.defined_rows(genes, i1, 1, np.array([0, 1], np.int64), i1, i1, i1 - 1, i1,
                       np.zeros((1, 1), np.int64), i1, 1, np.zeros((1, 1), np.int64))
        _KERNELS = k
        # a definition's table rows (its descriptors' and MACs / params' gather-sums)
        defined_gather.use_kernel(k.defined_rows)
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
        old, _POOL = (
            _POOL,
            (
                ThreadPoolExecutor(threads - 1, thread_name_prefix="tree-tables")
                if threads > 1
                else None
            ),
        )
        _THREADS = threads
        if old is not None:
            old.shutdown(wait=False)


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

    def __init__(
        self,
        space,
        thresholds: list[np.ndarray],
        groups: list[np.ndarray],
        luts: list[np.ndarray],
        lut: list[np.ndarray],
        offsets: list[np.ndarray],
        tables: list[np.ndarray],
        w_extra: np.ndarray,
        w0: np.ndarray,
    ) -> None:
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
        self._spec: FusedSpec | None = None  # see _fused_ok
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

    def _variables(
        self, kernels, genes: np.ndarray, buf: Buffers | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if buf is None:  # (a buffer's arrays are overwritten by its next use: not kept)
            # a Rank chunk's basis columns and projected features read the same variables
            return chunk_memo((id(self), "variables", id(kernels)), genes,
                              lambda: self._compute_variables(kernels, genes))
        return self._compute_variables(kernels, genes, buf)

    def _compute_variables(
        self, kernels, genes: np.ndarray, buf: Buffers | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if kernels is not None and self._fused_ok(kernels):
            return self._variables_fused(kernels, genes, buf)
        return self._variables_numpy(genes)

    def _xt(self, n: int) -> np.ndarray:
        small = int(self.space.cardinalities.max()) < 255 and all(
            len(t) < 255 for t in self.thresholds
        )
        return np.empty(
            (self.space.num_genes + len(self.thresholds) + 1, n),
            dtype=np.uint8 if small else np.int32,
        )

    def _variables_numpy(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        extra = np.ascontiguousarray(extra_features(self.space, genes).T, dtype=np.float64)
        g = genes.shape[1]
        xt = self._xt(len(genes))
        xt[:g] = effective_genes(self.space, genes).T
        for i, thr in enumerate(self.thresholds):
            xt[g + i] = np.searchsorted(thr, extra[i], side="left")
        xt[-1] = 0
        return xt, extra

    def _variables_fused(
        self, kernels, genes: np.ndarray, buf: Buffers | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``_variables_numpy`` in two numba passes over the genes (the MACs / params sums in
        numpy's summation order with the effective genes; the bins) around numpy's
        ``log1p``, into ``buf`` (allocated here if None)."""
        spec = self._spec
        assert spec is not None
        genes = np.ascontiguousarray(genes, dtype=np.int16)  # the compiled signature
        b = Buffers(self, len(genes)) if buf is None else buf
        kernels.cost_sums(genes, *spec.costs, b.sums, b.xt)
        np.log1p(b.sums, out=b.sums)
        nc = len(self.thresholds)
        if spec.res_term is not None:  # OFA's (resolution / 224) ** 2, as a 25-entry table
            np.take(spec.res_term, genes[:, spec.res_gene], out=b.extra32[0])
        b.extra32[nc - 2 :] = b.sums  # float64 -> float32, as ``astype``
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
                self._spec = FusedSpec.of(self)
                if self._spec is not None:
                    sp = self.space
                    genes = np.concatenate([sp.sample(2000, 12345), sp.table.genes[:2000]])
                    a, b = self._variables_fused(kernels, genes), self._variables_numpy(genes)
                    ok = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
                    if not ok:
                        log.warning(
                            "%s tree tables: fused variables differ from numpy's; "
                            "numpy computes them",
                            sp.name,
                        )
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
                        if np.array_equal(
                            lut[start : start + card], np.arange(card, dtype=np.int64) * stride
                        ):
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
        if (
            kernels is None
            or pool is None
            or threads < 2
            or n < 2 * threads
            or n * len(cols) < _PARALLEL_MIN
        ):
            self._evaluate(kernels, genes, cols, out)
            return out.T
        step = -(-n // threads)
        # every buffer a part needs is allocated here, by the calling thread: a pool
        # thread allocating its own would grow a malloc arena of its own (resident memory)
        parts = [
            (
                kernels,
                genes[a : a + step],
                cols,
                out[:, a : a + step],
                Buffers(self, len(genes[a : a + step])),
            )
            for a in range(0, n, step)
        ]
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

    def _evaluate(
        self,
        kernels,
        genes: np.ndarray,
        cols: list[int],
        out: np.ndarray,
        buf: Buffers | None = None,
    ) -> None:
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
                _gather_sum_numpy(
                    xt,
                    self.groups[k],
                    self.luts[k],
                    self.lut[k],
                    self.offsets[k],
                    self.tables[k],
                    row,
                )
            else:
                kernels.gather_sum_mixed(
                    xt, *self._slots(k), self.lut[k], self.offsets[k], self.tables[k], row
                )

    # -------------------------------------------------------------- persist
    def save(self, path: Path) -> None:
        def cat(arrs: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrs) if arrs else np.zeros(0)

        np.savez(
            path,
            format_version=np.array(TABLES_FORMAT_VERSION),
            num_groups=np.array([len(a) for a in self.groups]),
            num_lut=np.array([len(a) for a in self.lut]),
            num_cells=np.array([len(a) for a in self.tables]),
            groups=cat(self.groups),
            luts=cat(self.luts),
            lut=cat(self.lut),
            offsets=cat(self.offsets),
            tables=cat(self.tables),
            w_extra=self.w_extra,
            w0=self.w0,
            num_thresholds=np.array([len(t) for t in self.thresholds], np.int64),
            thresholds=cat(self.thresholds),
        )

    @classmethod
    def load(cls, space, path: Path) -> TreeTables:
        with np.load(path, allow_pickle=False) as a:
            if int(a["format_version"]) != TABLES_FORMAT_VERSION:
                raise ValueError("tree tables format mismatch")

            def split(name: str, counts: str) -> list[np.ndarray]:
                return list(np.split(a[name], np.cumsum(a[counts])[:-1]))

            return cls(
                space,
                split("thresholds", "num_thresholds"),
                split("groups", "num_groups"),
                split("luts", "num_groups"),
                split("lut", "num_lut"),
                split("offsets", "num_groups"),
                split("tables", "num_cells"),
                a["w_extra"],
                a["w0"],
            )
