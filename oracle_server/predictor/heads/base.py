"""What every head kind shares: its fit inputs, its fitted candidate, and ``HeadKind``.

A head kind is ONE class (an estimator, as in scikit-learn / LightGBM): ``fit`` on a
device's few samples (``FitInputs``) gives a ``Candidate`` (its typed parameters as JSON
plus its exact leave-one-out predictions), ``predict_log`` maps the proxy's basis
outputs, the proxy features and the architecture descriptors to log latency, and class
flags say what it reads and when it is fit. ``register_head`` (``registry.py``) adds a
kind by name; nothing else lists the kinds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from oracle_server.predictor.heads.params import HeadParams
from oracle_server.predictor.heads.stats import spearman_columns
from oracle_server.predictor.priors import DescriptorPrior

MS_FLOOR = 1e-3

P = TypeVar("P", bound=HeadParams)
#: stored (JSON) or typed parameters: every ``HeadKind`` method accepts both
AnyParams = HeadParams | Mapping[str, Any]


@dataclass(frozen=True)
class Candidate:
    """A fitted head before selection: parameters + its leave-one-out predictions (log ms)."""

    kind: str
    params: dict  # the JSON form (``HeadParams.to_dict``)
    loo_log: np.ndarray  # (n,) leave-one-out predictions of log latency


@dataclass(frozen=True)
class FitInputs:
    """What a head may read at fit time (``y`` in ms, validated)."""

    basis: np.ndarray  # (n, B) proxy outputs, ms
    features: np.ndarray  # (n, F) proxy features
    y: np.ndarray  # (n,) ms
    weights: np.ndarray  # (F + 1, B) proxy linear models (ms)
    cost_matrix: np.ndarray  # (F, K) features -> additive cost summaries
    descriptors: np.ndarray | None = None  # (n, D) hardware-agnostic descriptors
    prior: DescriptorPrior | None = None  # basis devices' descriptor prior

    @property
    def log_b(self) -> np.ndarray:
        return log_basis(self.basis)

    @property
    def z(self) -> np.ndarray:
        return np.log(self.y)


def log_basis(basis: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(basis, MS_FLOOR))


def best_basis(log_b: np.ndarray, z: np.ndarray) -> int:
    """Basis column best rank-correlated with ``z`` (Pearson on logs breaks ties)."""
    rho = spearman_columns(log_b, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        pearson = np.nan_to_num(np.corrcoef(np.c_[log_b, z].T)[-1, :-1])
    return int(np.argmax(np.round(rho, 6) + 1e-7 * pearson))


def ms_to_log(ms: np.ndarray, floor_ms: float) -> np.ndarray:
    return np.log(np.maximum(ms, floor_ms))


def need_descriptors(desc: np.ndarray | None) -> np.ndarray:
    if desc is None:
        raise ValueError("this head reads architecture descriptors; pass them to predict")
    return desc


#: parsed stored parameters by the identity of their dict (``HeadKind.parse``), least
#: recently used first: a server ranking more devices than this keeps its busiest parsed
_PARSED_CACHE_SIZE = 1024
_PARSED: OrderedDict[int, tuple[Mapping[str, Any], HeadKind, HeadParams]] = OrderedDict()
_PARSED_LOCK = threading.Lock()


class HeadKind(Generic[P]):
    """One kind of head: its typed parameters, fit, predict and what it reads.

    Class flags (read by selection, the Rank path and the registry):

    * ``candidate``: fit for every new device (``candidate_kinds``), in registration order;
    * ``closed_space_only``: a candidate only in spaces wholly in the bundled table, where
      Rank answers from table rows (``ridge``, ``additive``, ``counts``: they read every
      basis column or the whole cost matrix; ``ALL_COLUMN_KINDS``);
    * ``last_resort``: fit when no candidate is available (``affine``);
    * ``flops_baseline``: the FLOPs ranking as a head (``flops``): its leave-one-out
      Spearman is the device's ``flops_spearman`` and it is served alone when it beats
      the fitted heads clearly (``selection.FLOPS_FALLBACK_MARGIN``);
    * ``composite``: made of member heads (``ensemble``, built by selection);
    * ``reads_basis`` / ``reads_features`` / ``reads_descriptors``: which inputs
      ``predict_log`` may read (``columns`` says which basis columns); a kind that reads
      the descriptors is only fit when they are given;
    * ``reads_prior``: ``fit`` reads the space's descriptor prior (``FitInputs.prior``), so
      the kind is only fit when there is one;
    * ``projectable``: predicts from a few linear combinations of the descriptors and
      features (``projection`` / ``feature_projection``, Rank's fast path).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[HeadParams]] = HeadParams
    min_samples: ClassVar[int] = 2
    candidate: ClassVar[bool] = False
    closed_space_only: ClassVar[bool] = False
    last_resort: ClassVar[bool] = False
    flops_baseline: ClassVar[bool] = False
    composite: ClassVar[bool] = False
    reads_basis: ClassVar[bool] = False
    reads_features: ClassVar[bool] = False
    reads_descriptors: ClassVar[bool] = False
    reads_prior: ClassVar[bool] = False
    projectable: ClassVar[bool] = True

    # ------------------------------------------------------------- parameters
    def parse(self, params: AnyParams) -> P:
        """Typed parameters from stored JSON (validated; ``ParamsError`` names the field).

        A stored head's JSON is parsed once: the result is kept by the dict's identity
        (stored parameters are never changed in place: ``HeadFit`` is frozen), so Rank's
        per-request calls (columns, projections, predict) do not re-validate them."""
        if isinstance(params, self.Params):
            return params  # type: ignore[return-value]
        key = id(params)
        with _PARSED_LOCK:
            hit = _PARSED.get(key)
            if hit is not None and hit[0] is params and hit[1] is self:
                _PARSED.move_to_end(key)
                return hit[2]  # type: ignore[return-value]
        typed = self.Params.from_dict(self.name, params)
        with _PARSED_LOCK:
            _PARSED[key] = (params, self, typed)  # holds ``params``: its id stays unique
            _PARSED.move_to_end(key)
            while len(_PARSED) > _PARSED_CACHE_SIZE:
                _PARSED.popitem(last=False)
        return typed  # type: ignore[return-value]

    def get_params(self, params: AnyParams) -> dict[str, Any]:
        """The JSON form of ``params`` (as stored in ``HeadFit.params``)."""
        return self.parse(params).to_dict()

    def candidate_of(self, params: P, loo_log: np.ndarray) -> Candidate:
        return Candidate(self.name, params.to_dict(), loo_log)

    # --------------------------------------------------------------- estimator
    def available(self, inp: FitInputs) -> bool:
        """Enough samples, and the descriptors (the prior) when the kind reads them."""
        return (
            (inp.descriptors is not None or not self.reads_descriptors)
            and (inp.prior is not None or not self.reads_prior)
            and len(inp.y) >= self.min_samples
        )

    def fit(self, inp: FitInputs) -> Candidate:
        raise NotImplementedError(f"head kind '{self.name}' is not fit from samples")

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def columns(self, params: AnyParams) -> set[int]:
        """Basis columns ``predict_log`` reads."""
        return set()

    def member_kinds(self, params: AnyParams) -> list[str]:
        """The kinds this head is made of (``[name]`` unless ``composite``)."""
        return [self.name]

    # Rank's fast path: a head linear in a few combinations of the descriptors
    # (``u = desc @ M``) and of the proxy features (``uf = feats @ Mf``) declares ``M`` and
    # ``Mf`` and predicts from ``u`` and ``uf`` alone. Rank folds ``M`` into the
    # per-(position, choice) descriptor tables (``descriptors(..., matrix=M)``) and ``Mf``
    # into the one-hot layout (``LatencyModel.features_projected``), so it never builds
    # the (n, D) descriptors or the (n, F) features. ``predict_log`` stays the reference
    # (equal to float rounding, ``tests/unit/test_descriptor_projection.py``).
    def projection(self, params: AnyParams, num_descriptors: int) -> np.ndarray | None:
        """(D, p) descriptor combinations ``predict_log_projected`` reads; (D, 0) for a
        head that reads no descriptors; None when the head reads them otherwise."""
        if not self.projectable or self.reads_descriptors:
            return None
        return np.zeros((num_descriptors, 0))

    def num_projected(self, params: AnyParams) -> int:
        """Columns of ``projection(params, D)`` (the same for every D)."""
        return 0

    def feature_projection(self, params: AnyParams, num_features: int) -> np.ndarray | None:
        """(F, q) feature combinations ``predict_log_projected`` reads (like ``projection``)."""
        if not self.projectable or self.reads_features:
            return None
        return np.zeros((num_features, 0))

    def num_feature_projected(self, params: AnyParams) -> int:
        return 0

    def predict_log_projected(self, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        """``predict_log`` from ``uf = feats @ feature_projection(params, F)`` (n, q) and
        ``u = descriptors @ projection(params, D)`` (n, p)."""
        if not self.projectable or self.reads_descriptors or self.reads_features:
            raise NotImplementedError(f"head kind '{self.name}' has no projection")
        return self.predict_log(params, basis, uf, None)


class LinearMsProjection:
    """Heads linear in milliseconds over one projected descriptor column (``projection``
    gives the column's weights): ``ms = theta_0 + u``, floored, in logs."""

    def num_projected(self, params: Any) -> int:
        return 1

    def predict_log_projected(self, params: Any, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        p = self.parse(params)  # type: ignore[attr-defined]
        return ms_to_log(p.theta[0] + u[:, 0], p.floor_ms)


class LinearMsFeatures:
    """Heads linear in milliseconds over the proxy features: ``ms = feats @ w + c`` (plus
    what ``_log_ms`` adds), floored, in logs; Rank's fast path reads the one feature
    combination ``w`` (``_feature_weights``)."""

    def _feature_weights(self, p: Any) -> np.ndarray:
        raise NotImplementedError

    def _log_ms(self, p: Any, basis: np.ndarray, ms: np.ndarray) -> np.ndarray:
        return ms_to_log(ms, p.floor_ms)

    def predict_log(self, params: Any, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p = self.parse(params)  # type: ignore[attr-defined]
        return self._log_ms(p, basis, feats @ self._feature_weights(p) + p.c)

    def feature_projection(self, params: Any, num_features: int) -> np.ndarray:
        return self._feature_weights(self.parse(params))[:, None]  # type: ignore[attr-defined]

    def num_feature_projected(self, params: Any) -> int:
        return 1

    def predict_log_projected(self, params: Any, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        p = self.parse(params)  # type: ignore[attr-defined]
        return self._log_ms(p, basis, uf[:, 0] + p.c)
