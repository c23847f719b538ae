"""The numba gather-sum kernel of ``tree_tables.py`` (own module: imported lazily, compiled
once and cached on disk under ``__pycache__``)."""

from __future__ import annotations

import numba


@numba.njit(nogil=True, cache=True, boundscheck=False)
def gather_sum(xt, groups, luts, lut, offsets, table, out):  # pragma: no cover - compiled
    """``out[i] += sum_g table[offsets[g] + sum_s lut[luts[g, s] + xt[groups[g, s], i]]]``.

    Group-major: one group's small table (and its variable rows) stay in cache per pass.
    """
    for g in range(groups.shape[0]):
        base = offsets[g]
        r0, r1, r2 = xt[groups[g, 0]], xt[groups[g, 1]], xt[groups[g, 2]]
        l0, l1, l2 = luts[g, 0], luts[g, 1], luts[g, 2]
        for i in range(out.shape[0]):
            out[i] += table[base + lut[l0 + r0[i]] + lut[l1 + r1[i]] + lut[l2 + r2[i]]]
