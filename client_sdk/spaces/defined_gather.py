"""The batch gather-sum of a ``DefinedSpace``'s per-(position, choice) tables
(``DefinedSpace._gather``: its descriptors, with a folded ``matrix`` too, and its MACs /
params for the cost features).

For every architecture: the fixed part of its global (resolution, width) combination plus,
position by position in order, the flat-table row its block's genes choose (the all-zero
last row for a block past its stage's depth), computed for the whole batch one position at
a time (``table_rows``, then one (n, D) take-and-add per position). Inside ``shared_rows``
(the server's Rank, per chunk) gathers of the same genes array reuse those rows, so the
descriptors and the MACs / params of the proxy features compute them once.
``tests/unit/test_defined_gather.py`` keeps the previous implementation as the reference:
the same rows added in the same order, so the same float64 sums bit for bit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from client_sdk.spaces.defined import DefinedSpace

#: per position: its rows relative to its first row, and whether they stay within its own
#: rows (no global combination, always active: gathered from its slice of the table)
Rows = list[tuple[np.ndarray, bool]]

_LOCAL = threading.local()
T = TypeVar("T")


@contextlib.contextmanager
def shared_rows() -> Iterator[None]:
    """Within the block (this thread), gathers of the same genes array (the same object,
    which the caller must not change inside) in the same space reuse its table rows: the
    descriptors and the MACs / params of one Rank chunk compute them once. Nothing is
    kept after the block."""
    outer = getattr(_LOCAL, "memo", None)
    _LOCAL.memo = {}
    try:
        yield
    finally:
        _LOCAL.memo = outer


def chunk_memo(key: tuple, genes: np.ndarray, compute: Callable[[], T]) -> T:
    """``compute()``, or inside ``shared_rows`` (this thread) the value it gave for the same
    ``key`` and the same ``genes`` object earlier in the block: e.g. the tree tables'
    variables, which a Rank chunk's basis columns and its projected proxy features both
    read. The caller must not change the value."""
    memo = getattr(_LOCAL, "memo", None)
    if memo is None:
        return compute()
    full = (*key, id(genes))
    hit = memo.get(full)
    if hit is not None and hit[0] is genes:
        return hit[1]
    value = compute()
    memo[full] = (genes, value)  # holds ``genes``: its id stays unique within the block
    return value


def gather(sp: DefinedSpace, flat: np.ndarray, fixed: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """(n, D) ``fixed[global] + sum_p flat[row of position p]`` for a batch of genes: one
    (n, D) gather per position from contiguous gene columns (no (n, positions, D)
    intermediate), added in position order; inactive blocks gather the all-zero last row."""
    _, _, offsets, _ = sp._tables
    combo, rows = chunk_memo((id(sp), "rows", flat.shape[0]), genes,
                             lambda: table_rows(sp, genes, flat.shape[0]))
    if combo is not None:
        out = fixed.take(combo, axis=0)
    else:
        out = np.empty((np.shape(genes)[0], flat.shape[1]))
        out[:] = fixed[0]
    for p, (code, own) in enumerate(rows):
        lo = int(offsets[p])
        out += flat[lo : int(offsets[p + 1]) if own else None].take(code, axis=0)
    return out


#: a compiled ``table_rows`` (the server's numba ``_tree_kernel.defined_rows``, installed by
#: ``use_kernel`` once loaded: the same integers, ~3x faster for spaces with global choices
#: and depths). None: numpy (e.g. a light client install, which has no numba)
_ROWS_KERNEL: Callable | None = None


def use_kernel(kernel: Callable | None) -> None:
    """Install (None: remove) the compiled ``table_rows`` (``_ROWS_KERNEL``)."""
    global _ROWS_KERNEL
    _ROWS_KERNEL = kernel


def kernel_layout(sp: DefinedSpace) -> tuple[np.ndarray, ...]:
    """The position arrays ``_ROWS_KERNEL`` reads for ``sp`` (computed once per space): per
    position the start of its genes in ``(genes, radices)``, its depth gene (-1: always
    active) and its index in its stage; each depth gene's choice values; the offsets."""
    got = sp.__dict__.get("_rows_layout")
    if got is None:
        _, _, offsets, radix = sp._tables
        start, gene_of, mult, dgene, index = [0], [], [], [], []
        for p, pos in enumerate(sp.positions):
            gene_of += pos.genes
            # one gene is its own code (``table_rows``); several: a mixed-radix code
            mult += [1] if len(pos.genes) == 1 else radix[p][: len(pos.genes)]
            start.append(len(gene_of))
            j = sp._depth_genes.get(pos.stage)
            dgene.append(j if j is not None and pos.index >= sp._min_depth[pos.stage] else -1)
            index.append(pos.index)
        vals = np.zeros((len(sp._values), max(len(v) for v in sp._values)), dtype=np.int64)
        for j in sp._depth_genes.values():
            vals[j, : len(sp._values[j])] = sp._values[j]
        got = sp.__dict__["_rows_layout"] = (
            *(np.asarray(a, dtype=np.int64) for a in (start, gene_of, mult, dgene, index)),
            vals, np.asarray(offsets, dtype=np.int64))
    return got


def _rows_compiled(
    kernel: Callable, sp: DefinedSpace, genes: np.ndarray, num_rows: int
) -> tuple[np.ndarray | None, Rows]:
    cols = gene_columns(np.ascontiguousarray(genes, dtype=np.int16))  # the compiled signature
    combo = None
    if sp._res_gene is not None or sp._width_gene is not None:
        combo = sp._global_code_cols(cols)
    *layout, offsets = kernel_layout(sp)
    out = np.empty((len(sp.positions), cols.shape[1]), dtype=np.int64)
    kernel(cols, np.zeros(0, np.int64) if combo is None else combo, int(offsets[-1]), *layout,
           offsets, num_rows - 1, out)
    return combo, [(out[p], combo is None and pos.stage not in sp._depth_genes)
                   for p, pos in enumerate(sp.positions)]


def table_rows(
    sp: DefinedSpace, genes: np.ndarray, num_rows: int
) -> tuple[np.ndarray | None, Rows]:
    """Each architecture's global combination (None: the space has none) and, per position,
    its table rows relative to the position's first row (``Rows``) in a table of
    ``num_rows`` rows (the last one all zeros). With ``_ROWS_KERNEL`` installed: compiled."""
    kernel = _ROWS_KERNEL
    if kernel is not None and len(genes) and int(sp.cardinalities.max()) < 2**15:
        return _rows_compiled(kernel, sp, genes, num_rows)
    _, _, offsets, radix = sp._tables
    g = np.asarray(genes)
    cols = gene_columns(g if g.dtype.kind in "iu" else g.astype(np.int64))  # (genes, n)
    n = cols.shape[1]
    per_combo = int(offsets[-1])
    zero = num_rows - 1
    combo = base = None  # per-row first row of its global (resolution, width) combination
    if sp._res_gene is not None or sp._width_gene is not None:
        combo = sp._global_code_cols(cols)
        base = combo * per_combo
    active: dict[int, np.ndarray] = {}  # stage -> its depth per row
    for s, j in sp._depth_genes.items():
        active[s] = np.asarray(sp._values[j], dtype=np.int64).take(cols[j])
    rows: Rows = []
    for p, pos in enumerate(sp.positions):
        lo = int(offsets[p])
        # the row of position p relative to ``lo``: base + its genes' mixed-radix code
        if not pos.genes:
            code = np.zeros(n, dtype=np.int64) if base is None else base
        elif len(pos.genes) == 1:
            first = cols[pos.genes[0]]
            code = first if base is None else np.add(first, base, dtype=np.int64)
        else:
            code = np.multiply(cols[pos.genes[0]], radix[p][0], dtype=np.int64)
            for j, r in zip(pos.genes[1:], radix[p][1:], strict=True):
                code += np.multiply(cols[j], r, dtype=np.int64) if r != 1 else cols[j]
            if base is not None:
                code += base
        depth = active.get(pos.stage)
        if depth is not None and pos.index >= sp._min_depth[pos.stage]:  # may be inactive
            code = np.where(depth > pos.index, code, zero - lo)
        rows.append((code, base is None and depth is None))
    return combo, rows


#: rows per block of ``gene_columns`` (a block's columns stay in cache while written)
TRANSPOSE_BLOCK = 1024


def gene_columns(genes: np.ndarray) -> np.ndarray:
    """(g, n) C-contiguous copy of an (n, g) gene batch: ``np.ascontiguousarray(genes.T)``
    a block of rows at a time (small int16 elements: a plain strided copy misses cache)."""
    n, width = genes.shape
    out = np.empty((width, n), dtype=genes.dtype)
    for a in range(0, n, TRANSPOSE_BLOCK):
        out[:, a : a + TRANSPOSE_BLOCK] = genes[a : a + TRANSPOSE_BLOCK].T
    return out
