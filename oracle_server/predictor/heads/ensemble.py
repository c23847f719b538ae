"""``ensemble``: the weighted mean log prediction of member heads, what ``selection.py``
returns (the leave-one-out heaviest candidates, pseudo-BMA weights)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from oracle_server.predictor.heads.base import AnyParams, FitInputs, HeadKind
from oracle_server.predictor.heads.params import HeadParams, ParamsError
from oracle_server.predictor.heads.registry import head_kind, register_head, stack_projections


@dataclass(frozen=True, eq=False)
class Member:
    kind: HeadKind
    params: HeadParams


@dataclass(frozen=True, eq=False)
class EnsembleParams(HeadParams):
    members: tuple[Member, ...]
    weights: np.ndarray | None = None  # None: the plain mean

    @classmethod
    def from_dict(cls, kind: str, d: Mapping[str, Any]) -> EnsembleParams:
        if not isinstance(d, Mapping):
            raise ParamsError(kind, "*", f"params must be a JSON object, got {type(d).__name__}")
        for key in d:
            if key not in ("members", "weights"):
                raise ParamsError(kind, str(key), "is not a parameter of this kind "
                                                  "(have members, weights)")
        raw = d.get("members")
        if not isinstance(raw, (list, tuple)):
            raise ParamsError(kind, "members", "must be a list of {kind, params}")
        members = []
        for i, m in enumerate(raw):
            if not isinstance(m, Mapping) or "kind" not in m or "params" not in m:
                raise ParamsError(kind, f"members[{i}]", "must be {kind, params}")
            try:
                member = head_kind(str(m["kind"]))
            except ValueError as e:
                raise ParamsError(kind, f"members[{i}].kind", str(e)) from None
            members.append(Member(member, member.parse(m["params"])))
        weights = d.get("weights")
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64) if isinstance(weights, (list, tuple)) \
                else None
            if w is None or w.shape != (len(members),):
                raise ParamsError(kind, "weights", f"must be {len(members)} numbers")
            weights = w
        return cls(tuple(members), weights)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"members": [{"kind": m.kind.name, "params": m.params.to_dict()}
                                           for m in self.members]}
        if self.weights is not None:
            out["weights"] = self.weights.tolist()
        return out


@register_head
class Ensemble(HeadKind[EnsembleParams]):
    """Mean log prediction of member heads (``params["members"]``: ``{"kind", "params"}``),
    weighted by ``params["weights"]`` when given."""

    name, Params, composite = "ensemble", EnsembleParams, True

    def available(self, inp: FitInputs) -> bool:
        return False  # built by selection.py from the leave-one-out best candidates

    def member_kinds(self, params: AnyParams) -> list[str]:
        return [m.kind.name for m in self.parse(params).members]

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p = self.parse(params)
        parts = [m.kind.predict_log(m.params, basis, feats, desc) for m in p.members]
        return self._combine(p, parts)

    @staticmethod
    def _combine(p: EnsembleParams, parts: list[np.ndarray]) -> np.ndarray:
        if p.weights is None:
            return np.mean(parts, axis=0)
        return np.tensordot(p.weights, np.stack(parts), axes=1)

    def projection(self, params: AnyParams, num_descriptors: int) -> np.ndarray | None:
        return self._stacked([m.kind.projection(m.params, num_descriptors)
                              for m in self.parse(params).members], num_descriptors)

    def feature_projection(self, params: AnyParams, num_features: int) -> np.ndarray | None:
        return self._stacked([m.kind.feature_projection(m.params, num_features)
                              for m in self.parse(params).members], num_features)

    @staticmethod
    def _stacked(mats: list[np.ndarray | None], rows: int) -> np.ndarray | None:
        """The members' projections side by side; None if any member has none."""
        stacked = stack_projections(mats, rows)
        return None if stacked is None else stacked[0]

    def num_projected(self, params: AnyParams) -> int:
        return sum(m.kind.num_projected(m.params) for m in self.parse(params).members)

    def num_feature_projected(self, params: AnyParams) -> int:
        return sum(m.kind.num_feature_projected(m.params) for m in self.parse(params).members)

    def predict_log_projected(self, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        p = self.parse(params)
        parts, at, atf = [], 0, 0
        for m in p.members:
            q, r = m.kind.num_projected(m.params), m.kind.num_feature_projected(m.params)
            parts.append(m.kind.predict_log_projected(m.params, basis, uf[:, atf : atf + r],
                                                      u[:, at : at + q]))
            at, atf = at + q, atf + r
        return self._combine(p, parts)

    def columns(self, params: AnyParams) -> set[int]:
        out: set[int] = set()
        for m in self.parse(params).members:
            out |= m.kind.columns(m.params)
        return out
