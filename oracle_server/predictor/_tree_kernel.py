"""The numba kernels of ``tree_tables.py`` (own module: imported lazily, compiled once and
cached on disk under ``__pycache__``). Every kernel releases the GIL."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, boundscheck=False)
def gather_sum_mixed(xt, slots, mult, nlut, lut, offsets, table, out):  # pragma: no cover
    """``out[i] += sum_g table[offsets[g] + sum_s lut[luts[g, s] + xt[groups[g, s], i]]]``
    (``tree_tables._gather_sum_numpy``), group-major (one group's small table and its
    variable rows stay in cache per pass), each cell index computed with fewer loads: a
    gene variable's ``lut`` entry is ``value * stride`` (the constant's is 0), so those
    slots multiply; only extra-feature bins (a group's own bins) go through ``lut``.
    ``slots`` (G, 3) are the group's variables with the multiplied ones first, ``mult``
    their strides or (the last ``nlut[g]`` slots) their ``lut`` starts. Same cells, same
    order: same sums."""
    n = out.shape[0]
    for g in range(slots.shape[0]):
        t = table[offsets[g]:]
        r0, r1, r2 = xt[slots[g, 0]], xt[slots[g, 1]], xt[slots[g, 2]]
        a0, a1, a2 = mult[g, 0], mult[g, 1], mult[g, 2]
        k = nlut[g]
        if k == 0:
            for i in range(n):
                out[i] += t[np.int64(r0[i]) * a0 + np.int64(r1[i]) * a1 + np.int64(r2[i]) * a2]
        elif k == 1:
            for i in range(n):
                out[i] += t[np.int64(r0[i]) * a0 + np.int64(r1[i]) * a1 + lut[a2 + r2[i]]]
        elif k == 2:
            for i in range(n):
                out[i] += t[np.int64(r0[i]) * a0 + lut[a1 + r1[i]] + lut[a2 + r2[i]]]
        else:
            for i in range(n):
                out[i] += t[lut[a0 + r0[i]] + lut[a1 + r1[i]] + lut[a2 + r2[i]]]


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _pairwise(row, n):  # pragma: no cover - compiled
    """numpy's ``pairwise_sum`` for n <= 128 (8 partial sums): ``row[:n].sum()`` bit for bit
    (what ``ndarray.sum(axis=1)`` of a C-contiguous (m, n) array does per row)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += row[i]
        return res
    r0, r1, r2, r3 = row[0], row[1], row[2], row[3]
    r4, r5, r6, r7 = row[4], row[5], row[6], row[7]
    i = 8
    while i < n - (n % 8):
        r0 += row[i]
        r1 += row[i + 1]
        r2 += row[i + 2]
        r3 += row[i + 3]
        r4 += row[i + 4]
        r5 += row[i + 5]
        r6 += row[i + 6]
        r7 += row[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += row[i]
        i += 1
    return res


@numba.njit(nogil=True, cache=True, boundscheck=False)
def cost_sums(genes, pos_gene, pos_card, res_gene, nk, k_gene, e_gene, ne,
              dep_pos, depth_gene, depth_of, costs, fixed_m, fixed_p, cards,
              out, xt):  # pragma: no cover - compiled
    """``out[0] = MACs``, ``out[1] = params`` per architecture (equal to ``flops_params``:
    the cost tables hold whole numbers, so the summation order does not change a bit; the
    tables check it on a sample before using this kernel, ``_fused_ok``), and the effective
    genes into ``xt[:g]`` (one pass over the genes). ``costs`` (N, 2): each cost-table
    entry's (MACs, params) side by side, one cache line for both.

    Position p's cost-table index: FBNet ``p * pos_card + genes[pos_gene[p]]``; OFA
    (``res_gene`` >= 0) ``((res * P + p) * nk + genes[k_gene[p]]) * ne + genes[e_gene[p]]``
    and 0.0 for an inactive block (``dep_pos[p] >= depth_of[genes[depth_gene[p]]]``), whose
    kernel and expand genes become ``cards[...]`` in ``xt``; then numpy's pairwise sum over
    positions and the fixed part (per resolution for OFA)."""
    n, g = genes.shape
    npos = pos_gene.shape[0]
    rm = np.empty((_BLOCK, npos))
    rp = np.empty((_BLOCK, npos))
    # effective genes go through an arch-major block buffer, then out one row (cache line)
    # at a time: writing the g rows of xt column by column would thrash the cache when the
    # row stride is a power of two (a 16,384-architecture chunk: every row in one set)
    buf = np.empty((_BLOCK, g), dtype=xt.dtype)
    for a in range(0, n, _BLOCK):
        m = min(_BLOCK, n - a)
        for r in range(m):
            for j in range(g):
                buf[r, j] = genes[a + r, j]
        if res_gene >= 0:
            for p in range(npos):  # position-major over the block (15% faster for OFA)
                kg, eg, dg, dp = k_gene[p], e_gene[p], depth_gene[p], dep_pos[p]
                ck, ce = cards[kg], cards[eg]
                for r in range(m):
                    i = a + r
                    res = np.int64(genes[i, res_gene])
                    active = dp < depth_of[genes[i, dg]]
                    act = 1.0 if active else 0.0  # branch-free: value * (0 or 1), as numpy
                    kv, ev = genes[i, kg], genes[i, eg]
                    j = ((res * npos + p) * nk + np.int64(kv)) * ne + np.int64(ev)
                    rm[r, p] = costs[j, 0] * act
                    rp[r, p] = costs[j, 1] * act
                    buf[r, kg] = kv if active else ck
                    buf[r, eg] = ev if active else ce
        else:
            for r in range(m):
                for p in range(npos):
                    j = p * pos_card + np.int64(genes[a + r, pos_gene[p]])
                    rm[r, p] = costs[j, 0]
                    rp[r, p] = costs[j, 1]
        for r in range(m):
            i = a + r
            fixed = np.int64(genes[i, res_gene]) if res_gene >= 0 else 0
            out[0, i] = fixed_m[fixed] + _pairwise(rm[r], npos)
            out[1, i] = fixed_p[fixed] + _pairwise(rp[r], npos)
        for j in range(g):
            row = xt[j]
            for r in range(m):
                row[a + r] = buf[r, j]


_BLOCK = 64  # architectures per block of ``cost_sums``' effective genes (one cache line)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def fill_bins(extra, thr, thr_start, xt, g):  # pragma: no cover - compiled
    """``xt[g + c]``: extra feature c's bin (``searchsorted(thresholds, float64(x), "left")``,
    i.e. how many thresholds are below x: a branch-free count over the sorted thresholds),
    then the constant row ``xt[g + C] = 0``."""
    n = extra.shape[1]
    nc = extra.shape[0]
    for c in range(nc):
        t = thr[thr_start[c]:thr_start[c + 1]]
        row = xt[g + c]
        x32 = extra[c]
        for i in range(n):
            x = np.float64(x32[i])
            cnt = 0
            for k in range(t.shape[0]):
                cnt += t[k] < x
            row[i] = cnt
    xt[g + nc, :] = 0


@numba.njit(nogil=True, cache=True, boundscheck=False)
def defined_rows(cols, combo, per_combo, pos_start, pos_genes, pos_radix, pos_dgene, pos_index,
                 vals, offsets, zero, out):  # pragma: no cover - compiled
    """``client_sdk.spaces.defined_gather.table_rows`` of a definition's space into ``out``
    (positions, n): position p's row relative to ``offsets[p]``, i.e. ``combo[i] *
    per_combo`` (0 when ``combo`` is empty) plus its genes' mixed-radix code ``sum_k
    cols[pos_genes[k], i] * pos_radix[k]``, or ``zero - offsets[p]`` (the all-zero last row)
    where its stage's depth gene ``pos_dgene[p]`` (-1: always active) chooses a depth
    ``<= pos_index[p]``. The same integers as numpy's."""
    n = cols.shape[1]
    has_combo = combo.shape[0] > 0
    for p in range(pos_start.shape[0] - 1):
        row = out[p]
        if has_combo:
            for i in range(n):
                row[i] = combo[i] * per_combo
        else:
            row[:] = 0
        for k in range(pos_start[p], pos_start[p + 1]):
            gene = cols[pos_genes[k]]
            r = pos_radix[k]
            for i in range(n):
                row[i] += np.int64(gene[i]) * r
        dg = pos_dgene[p]
        if dg >= 0:
            depth = cols[dg]
            chosen = vals[dg]
            idx = pos_index[p]
            inactive = zero - offsets[p]
            for i in range(n):
                if chosen[depth[i]] <= idx:
                    row[i] = inactive
