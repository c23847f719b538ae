"""The head kinds by name, and the functions that dispatch on a stored head's kind.

``register_head(cls)`` (a class decorator) adds a kind; the candidates every new device is
fit with, and those left out of open spaces, follow from the class flags
(``HeadKind.candidate`` / ``closed_space_only``) in registration order.
"""

from __future__ import annotations

import numpy as np

from oracle_server.predictor.heads.base import AnyParams, Candidate, FitInputs, HeadKind
from oracle_server.predictor.priors import DescriptorPrior

#: every registered head kind by name (registration order)
HEADS: dict[str, HeadKind] = {}


def register_head(cls: type[HeadKind]) -> type[HeadKind]:
    """Register a head kind (class decorator): one instance under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in HEADS:
        raise ValueError(f"head kind '{cls.name}' is already registered")
    HEADS[cls.name] = cls()
    return cls


def unregister_head(name: str) -> None:
    """Remove a registered head kind (tests and experiments)."""
    head_kind(name)
    del HEADS[name]


def head_kind(kind: str) -> HeadKind:
    try:
        return HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head kind '{kind}'") from None


def candidate_names(open_space: bool = False) -> tuple[str, ...]:
    """The candidate heads every new device's samples are fit with (``selection.py``);
    ``open_space``: without the ``closed_space_only`` ones."""
    return tuple(name for name, h in HEADS.items()
                 if h.candidate and not (open_space and h.closed_space_only))


def candidate_kinds(space_size: int, table_size: int) -> tuple[str, ...]:
    """The candidate heads for a space of ``space_size`` architectures of which the bundled
    table holds ``table_size``. Validation of leaving the ``closed_space_only`` kinds out
    where Rank evaluates the proxy per request (HELP validation devices and
    leave-family-out non-test devices, FBNet and OFA, two sets of draws): equal or better
    without them (benchmarks/results/studies/selection_pbma.json); NB-201 answers from table rows
    whatever the head reads and keeps them (they help its leave-family-out by 0.005)."""
    return candidate_names(open_space=space_size != table_size)


def flops_baseline_kind() -> str | None:
    """The registered head that is the FLOPs baseline (``HeadKind.flops_baseline``)."""
    return next((name for name, h in HEADS.items() if h.flops_baseline), None)


def stack_projections(mats: list[np.ndarray | None],
                      rows: int) -> tuple[np.ndarray, list[slice]] | None:
    """(rows, p_i) projection matrices side by side and each one's column slice (an
    ensemble's members, or every device of a Rank); None if any is None."""
    if any(m is None for m in mats):
        return None
    slices, at = [], 0
    for m in mats:
        assert m is not None
        slices.append(slice(at, at + m.shape[1]))
        at += m.shape[1]
    return np.concatenate(mats, axis=1) if mats else np.zeros((rows, 0)), slices


def predict_log(kind: str, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                desc: np.ndarray | None = None) -> np.ndarray:
    """Point prediction of log latency for a batch, for any head kind (vectorised)."""
    return head_kind(kind).predict_log(params, basis, feats, desc)


def projection(kind: str, params: AnyParams, num_descriptors: int) -> np.ndarray | None:
    """(D, p) descriptor combinations the head reads (``HeadKind.projection``)."""
    return head_kind(kind).projection(params, num_descriptors)


def feature_projection(kind: str, params: AnyParams, num_features: int) -> np.ndarray | None:
    """(F, q) feature combinations the head reads (``HeadKind.feature_projection``)."""
    return head_kind(kind).feature_projection(params, num_features)


def predict_log_projected(kind: str, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                          u: np.ndarray) -> np.ndarray:
    """``predict_log`` from ``uf = features @ feature_projection(kind, params, F)`` and
    ``u = descriptors @ projection(kind, params, D)``."""
    return head_kind(kind).predict_log_projected(params, basis, uf, u)


def fit_candidate(
    kind: str,
    basis: np.ndarray,
    feats: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    cost_matrix: np.ndarray,
    descriptors: np.ndarray | None = None,
    prior: DescriptorPrior | None = None,
) -> Candidate:
    """Fit one head kind on ``n`` samples (``y`` in ms, already validated)."""
    inp = FitInputs(basis, feats.astype(np.float64), np.asarray(y, np.float64), weights,
                    cost_matrix, descriptors, prior)
    return head_kind(kind).fit(inp)
