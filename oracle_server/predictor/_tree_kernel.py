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
              dep_gene, dep_pos, depth_of, macs, params, fixed_m, fixed_p,
              out):  # pragma: no cover - compiled
    """``out[0] = MACs``, ``out[1] = params`` per architecture, as ``flops_params`` sums them.

    Position p's cost-table index: FBNet ``p * pos_card + genes[pos_gene[p]]``; OFA
    (``res_gene`` >= 0) ``((res * P + p) * nk + genes[k_gene[p]]) * ne + genes[e_gene[p]]``
    and 0.0 for an inactive block (``dep_pos[p] >= depth_of[genes[dep_gene[p]]]``); then
    numpy's pairwise sum over positions and the fixed part (per resolution for OFA)."""
    n, npos = genes.shape[0], pos_gene.shape[0]
    rm = np.empty(npos)
    rp = np.empty(npos)
    for i in range(n):
        fixed = 0
        if res_gene >= 0:
            res = np.int64(genes[i, res_gene])
            fixed = res
            for p in range(npos):  # branch-free: value * (0.0 or 1.0), as numpy's
                act = 1.0 if dep_pos[p] < depth_of[genes[i, dep_gene[p]]] else 0.0
                j = ((res * npos + p) * nk + np.int64(genes[i, k_gene[p]])) * ne + \
                    np.int64(genes[i, e_gene[p]])
                rm[p] = macs[j] * act
                rp[p] = params[j] * act
        else:
            for p in range(npos):
                j = p * pos_card + np.int64(genes[i, pos_gene[p]])
                rm[p] = macs[j]
                rp[p] = params[j]
        out[0, i] = fixed_m[fixed] + _pairwise(rm, npos)
        out[1, i] = fixed_p[fixed] + _pairwise(rp, npos)


_BLOCK = 512  # architectures per block: the genes read column by column stay in L1


@numba.njit(nogil=True, cache=True, boundscheck=False)
def fill_variables(genes, cards, dep_gene, dep_pos, depth_of, extra, thr, thr_start,
                   xt):  # pragma: no cover - compiled
    """``xt`` (V, n): effective genes (``cards[j]`` where gene j's block is inactive:
    ``dep_gene[j] >= 0`` and ``dep_pos[j] >= depth_of[genes[dep_gene[j]]]``), then each
    extra feature's bin (``searchsorted(thresholds, float64(x), "left")``, i.e. how many
    thresholds are below x: a branch-free count over the sorted thresholds), then 0."""
    n, g = genes.shape
    nc = extra.shape[0]
    for a in range(0, n, _BLOCK):
        b = min(a + _BLOCK, n)
        for j in range(g):
            row = xt[j]
            d = dep_gene[j]
            if d < 0:
                for i in range(a, b):
                    row[i] = genes[i, j]
            else:
                card, pos = cards[j], dep_pos[j]
                for i in range(a, b):
                    v = genes[i, j]
                    row[i] = card if pos >= depth_of[genes[i, d]] else v
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
