"""Which proxy outputs and inputs a fitted head reads, from its kind and parameters.

Lets the Rank path evaluate only the basis columns (and features) a request's heads need.
"""

from __future__ import annotations

import numpy as np

from oracle_server.predictor.head_fit import HeadFit


def basis_columns(head: HeadFit) -> set[int] | None:
    """Basis columns ``head.predict`` reads (None: all of them, or not known)."""
    cols = kind_columns(head.kind, head.params)
    if cols is not None and head.sigma:
        cols.add(int(head.sigma["anchor"]))  # log_sigma reads the anchor column
    return cols


def kind_columns(kind: str, p: dict) -> set[int] | None:
    if kind in ("basis", "affine"):
        return {int(p["basis_index"])}
    if kind == "nnls_log":
        return {int(i) for i in np.flatnonzero(np.asarray(p["weights"], dtype=np.float64))}
    if kind == "adaproxy":
        return set()
    if kind in ("additive", "counts"):
        coef = np.asarray(p.get("coef_basis") or [], dtype=np.float64)
        return {int(i) for i in np.flatnonzero(coef)}
    if kind == "ensemble":  # mean of member heads ({"kind", "params"} each)
        out: set[int] = set()
        for member in p.get("members") or ():
            cols = kind_columns(member["kind"], member["params"])
            if cols is None:
                return None
            out |= cols
        return out
    return None


def reads_features(head: HeadFit) -> bool:
    """False only for head kinds known not to read the features."""
    if head.kind == "ensemble":
        members = head.params.get("members") or ()
        return any(m["kind"] not in FEATURE_FREE_KINDS for m in members)
    return head.kind not in FEATURE_FREE_KINDS


FEATURE_FREE_KINDS = frozenset({"basis", "affine", "nnls_log"})
