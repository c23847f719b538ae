"""Per-device adaptation heads, fit in milliseconds from 5-50 measured architectures.

Every head maps the proxy's basis outputs ``basis`` (n, B) in ms, the proxy features
``features`` (n, F) and the hardware-agnostic ``descriptors`` (n, D, ``spaces.descriptors``)
to a latency. Each kind is ONE class (``base.HeadKind``: typed parameters, fit, predict,
what it reads, class flags), registered by name with ``register_head``:

==============  =========================================================================
module          head kinds
==============  =========================================================================
``basis``       ``basis`` (identity on a basis device), ``affine``, ``nnls_log``
``ridge``       ``ridge``, ``adaproxy``, ``additive``, ``counts``
``descriptor``  ``descriptor``, ``hybrid`` (empirical-Bayes descriptor models)
``scaling``     ``flops`` (the FLOPs baseline), ``powerlaw``
``nonneg``      ``nnls_desc``, ``nnls_eb6``, ``nnls_eb``
``ensemble``    ``ensemble`` (what ``selection.py`` returns)
==============  =========================================================================

Shared: ``stats`` (Spearman, one implementation with the SDK's ``client_sdk/stats.py``),
``solver`` (dual ridge, exact leave-one-out, grid search), ``params`` (typed parameters,
validated when a stored head is loaded), ``registry`` (the kinds by name, dispatch).

Adding a head kind: one module with a ``HeadParams`` dataclass and a ``HeadKind`` subclass
decorated with ``@register_head`` (flags: ``candidate``, ``min_samples``, ``reads_*``,
``projectable``, ...), imported below (registration order is the candidates' order).
"""

from __future__ import annotations

from typing import Any

# The head families, imported (so registered) in THIS order: it is the candidates' order
# (selection breaks ties by it, and scores them in it). Keep it unsorted.
# isort: off
from oracle_server.predictor.heads import basis as _basis  # noqa: F401
from oracle_server.predictor.heads import ridge as _ridge  # noqa: F401
from oracle_server.predictor.heads import descriptor as _descriptor  # noqa: F401
from oracle_server.predictor.heads import scaling as _scaling  # noqa: F401
from oracle_server.predictor.heads import nonneg as _nonneg  # noqa: F401
from oracle_server.predictor.heads import ensemble as _ensemble  # noqa: F401
# isort: on
from oracle_server.predictor.heads.base import (
    MS_FLOOR,
    AnyParams,
    Candidate,
    FitInputs,
    HeadKind,
    best_basis,
    log_basis,
)
from oracle_server.predictor.heads.basis import fit_affine, fit_nnls_log
from oracle_server.predictor.heads.descriptor import HYBRID_COLUMNS, fit_descriptor, fit_hybrid
from oracle_server.predictor.heads.nonneg import (
    NONNEG_BASE_COLUMNS,
    NONNEG_EB_GRID,
    fit_nonneg_descriptor,
)
from oracle_server.predictor.heads.params import HeadParams, ParamsError
from oracle_server.predictor.heads.registry import (
    HEADS,
    candidate_kinds,
    candidate_names,
    feature_projection,
    fit_candidate,
    flops_baseline_kind,
    head_kind,
    predict_log,
    predict_log_projected,
    projection,
    register_head,
    stack_projections,
    unregister_head,
)
from oracle_server.predictor.heads.ridge import fit_adaproxy, fit_additive, fit_counts, fit_ridge
from oracle_server.predictor.heads.scaling import (
    POWERLAW_COLUMNS,
    fit_flops,
    fit_powerlaw,
    powerlaw_inputs,
)
from oracle_server.predictor.heads.solver import (
    PRIOR_FREE,
    affine_coef,
    best_over_grid,
    best_over_scaled_grid,
    dual_ridge,
)
from oracle_server.predictor.heads.stats import spearman, spearman_columns

# former private names, imported by layer_level.py, tests and benchmarks
_affine_coef = affine_coef
_best_over_grid = best_over_grid
_best_over_scaled_grid = best_over_scaled_grid


def __getattr__(name: str) -> Any:
    """The kind lists, from the registry's class flags at the time they are read:
    ``HEAD_KINDS`` (the candidates), ``ALL_COLUMN_KINDS`` (``closed_space_only``) and
    ``OPEN_SPACE_HEAD_KINDS`` (the candidates without them)."""
    if name == "HEAD_KINDS":
        return candidate_names()
    if name == "ALL_COLUMN_KINDS":
        return tuple(k for k, h in HEADS.items() if h.candidate and h.closed_space_only)
    if name == "OPEN_SPACE_HEAD_KINDS":
        return candidate_names(open_space=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALL_COLUMN_KINDS",
    "HEADS",
    "HEAD_KINDS",
    "HYBRID_COLUMNS",
    "MS_FLOOR",
    "NONNEG_BASE_COLUMNS",
    "NONNEG_EB_GRID",
    "OPEN_SPACE_HEAD_KINDS",
    "POWERLAW_COLUMNS",
    "PRIOR_FREE",
    "AnyParams",
    "Candidate",
    "FitInputs",
    "HeadKind",
    "HeadParams",
    "ParamsError",
    "best_basis",
    "candidate_kinds",
    "candidate_names",
    "dual_ridge",
    "feature_projection",
    "fit_adaproxy",
    "fit_additive",
    "fit_affine",
    "fit_candidate",
    "fit_counts",
    "fit_descriptor",
    "fit_flops",
    "fit_hybrid",
    "fit_nnls_log",
    "fit_nonneg_descriptor",
    "fit_powerlaw",
    "fit_ridge",
    "flops_baseline_kind",
    "head_kind",
    "log_basis",
    "powerlaw_inputs",
    "predict_log",
    "predict_log_projected",
    "projection",
    "register_head",
    "spearman",
    "spearman_columns",
    "stack_projections",
    "unregister_head",
]
