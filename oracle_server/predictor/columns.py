"""Which proxy outputs and inputs a fitted head reads, from its kind and parameters.

Lets the Rank path evaluate only the basis columns (and features / descriptors) that a
request's heads need. The knowledge lives in each head class (``heads.HEADS``: its
``columns``, ``member_kinds`` and ``reads_*`` flags).
"""

from __future__ import annotations

from oracle_server.predictor.head_fit import HeadFit
from oracle_server.predictor.heads import head_kind


def basis_columns(head: HeadFit) -> set[int] | None:
    """Basis columns ``head.predict`` reads (None: not known)."""
    try:
        cols = kind_columns(head.kind, head.params)
    except (KeyError, ValueError):
        return None
    if head.sigma and int(head.sigma["anchor"]) >= 0:
        cols.add(int(head.sigma["anchor"]))  # log_sigma reads the anchor column
    return cols


def kind_columns(kind: str, p: dict) -> set[int]:
    return set(head_kind(kind).columns(p))


def _members(head: HeadFit) -> list[str]:
    return head_kind(head.kind).member_kinds(head.params)


def reads_features(head: HeadFit) -> bool:
    """Whether any part of the head reads the proxy features."""
    return any(head_kind(k).reads_features for k in _members(head))


def reads_descriptors(head: HeadFit) -> bool:
    """Whether any part of the head reads the architecture descriptors."""
    return any(head_kind(k).reads_descriptors for k in _members(head))
