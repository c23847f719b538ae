"""Adding a head kind is one class in one module.

A toy kind defined and registered here (never in ``oracle_server``) is fitted with the
other candidates, selected, served by Rank and persisted; then it is unregistered. Also:
the class flags give the historical kind lists, and a stored head's parameters are
validated on load with an error naming the kind and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from oracle_server.oracle import Oracle, predict
from oracle_server.predictor import HeadFit, LatencyModel, build_model, heads
from oracle_server.predictor.heads import (
    HEADS,
    AnyParams,
    Candidate,
    FitInputs,
    HeadKind,
    HeadParams,
    ParamsError,
    head_kind,
    register_head,
    unregister_head,
)
from oracle_server.predictor.proxy import ProxyConfig
from oracle_server.predictor.selection import member_kinds
from oracle_server.store import REGISTERED, Device, DeviceStore

TOY = "toy_wave"


@dataclass(frozen=True, eq=False)
class WaveParams(HeadParams):
    basis_index: int
    a: float
    c: float


def _wave(log_b: np.ndarray) -> np.ndarray:
    return np.cos(3.0 * log_b)


def _least_squares(u: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    a, c = np.linalg.lstsq(np.c_[u, np.ones(len(u))], z, rcond=None)[0]
    return float(a), float(c)


class Wave(HeadKind[WaveParams]):
    """log y = a cos(3 log b_k) + c on basis column k: a shape no built-in head has."""

    name, Params, min_samples = TOY, WaveParams, 4
    candidate, reads_basis = True, True

    def fit(self, inp: FitInputs) -> Candidate:
        u, z = _wave(inp.log_b), inp.z
        k = int(np.argmax([abs(np.corrcoef(u[:, j], z)[0, 1]) for j in range(u.shape[1])]))
        keep = ~np.eye(len(z), dtype=bool)
        loo = np.empty(len(z))
        for i in range(len(z)):
            a, c = _least_squares(u[keep[i], k], z[keep[i]])
            loo[i] = a * u[i, k] + c
        return self.candidate_of(WaveParams(k, *_least_squares(u[:, k], z)), loo)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p = self.parse(params)
        return p.a * _wave(heads.log_basis(basis[:, p.basis_index])) + p.c

    def columns(self, params: AnyParams) -> set[int]:
        return {self.parse(params).basis_index}


@pytest.fixture
def toy() -> Iterator[HeadKind]:
    register_head(Wave)
    try:
        yield head_kind(TOY)
    finally:
        unregister_head(TOY)
    assert TOY not in HEADS and TOY not in heads.HEAD_KINDS


@pytest.fixture(scope="module")
def tiny_model() -> LatencyModel:
    """A tiny, fast proxy (OFA space, 10 rounds, 3 basis devices)."""
    return build_model("ofa_mbv3", basis_devices=("2080ti_1", "titan_xp_32", "v100_64"),
                       config=ProxyConfig(num_rounds=10, num_leaves=7))


def _wave_device(model: LatencyModel, genes: np.ndarray) -> np.ndarray:
    """A device whose log latency is a cosine of basis column 1's (+ 0.1 % noise)."""
    log_b = heads.log_basis(model.basis(genes)[:, 1])
    noise = np.random.default_rng(7).normal(0.0, 1e-3, len(genes))
    return np.exp(0.8 * _wave(log_b) + 1.0 + noise)


def test_a_registered_head_is_fitted_selected_served_and_persisted(
        toy: HeadKind, tiny_model: LatencyModel) -> None:
    model, sp = tiny_model, tiny_model.space
    assert TOY in heads.HEAD_KINDS and TOY in model.head_kinds  # a candidate everywhere
    genes = sp.sample(14, rng=3)
    y = _wave_device(model, genes)

    # fitted and selected: scored with the other candidates, and it wins
    head = model.fit_head(genes, y)
    assert TOY in head.candidates and len(head.candidates) > 5
    assert head.candidates[TOY] == max(v for v in head.candidates.values() if v is not None)
    assert TOY in member_kinds(head)
    if head.kind == "ensemble":
        kinds = member_kinds(head)
        assert kinds[int(np.argmax(head.params["weights"]))] == TOY
    assert head.expected_spearman > 0.95

    # served: Rank's prediction (only the basis columns the head declares) == the reference
    device = Device(sp.name, "toy", REGISTERED, head)
    store = DeviceStore.in_memory({sp.name: model}, [device])
    batch = sp.sample(400, rng=5)
    features = model.features(batch)
    want = head.predict(model.basis(batch, features), features.astype(np.float64))
    (got,) = predict(model, batch, [device])
    np.testing.assert_array_equal(got.latency_ms, want.latency_ms)
    np.testing.assert_array_equal(got.log_sigma, want.log_sigma)
    (ranking,) = Oracle(store).rank(sp.name, batch, ["toy"], return_uncertainty=True).rankings
    np.testing.assert_allclose(ranking.latency_ms, want.latency_ms, rtol=1e-6)  # float32
    np.testing.assert_array_equal(ranking.order, np.argsort(ranking.latency_ms, kind="stable"))
    truth = _wave_device(model, batch)
    assert np.corrcoef(np.log(ranking.latency_ms), np.log(truth))[0, 1] > 0.95

    # persisted: a JSON round trip predicts the same; a damaged stored head is refused
    stored = json.loads(json.dumps(head.to_dict()))
    again = HeadFit.from_dict(stored)
    basis = model.basis(batch, features)
    np.testing.assert_array_equal(again.predict(basis, features).latency_ms,
                                  head.predict(basis, features).latency_ms)
    bad = HeadFit(TOY, 3, 0.9, 0.9, 0.0, {"basis_index": 1, "a": "x", "c": 0.0}).to_dict()
    with pytest.raises(ValueError, match=f"head kind '{TOY}': field 'a' must be a number"):
        HeadFit.from_dict(bad)


def test_kind_lists_follow_the_class_flags() -> None:
    assert heads.HEAD_KINDS == ("affine", "nnls_log", "ridge", "adaproxy", "additive", "counts",
                                "descriptor", "hybrid", "flops", "powerlaw", "nnls_eb6",
                                "nnls_eb")
    assert heads.ALL_COLUMN_KINDS == ("ridge", "additive", "counts")
    assert "ridge" not in heads.candidate_kinds(10**20, 1000)
    assert heads.candidate_kinds(1000, 1000) == heads.HEAD_KINDS
    assert heads.flops_baseline_kind() == "flops"
    assert [k for k, h in HEADS.items() if h.last_resort] == ["affine"]
    assert [k for k, h in HEADS.items() if h.composite] == ["ensemble"]
    with pytest.raises(ValueError, match="already registered"):
        register_head(type(head_kind("affine")))


def test_stored_parameters_are_validated_naming_kind_and_field(toy: HeadKind) -> None:
    def load(kind: str, params: dict) -> HeadFit:
        return HeadFit.from_dict(HeadFit(kind, 3, 0.9, 0.9, 0.0, params).to_dict())

    ok = {"basis_index": 0, "a": 1.0, "c": 0.0}
    load("affine", ok)
    cases = [
        ("affine", {"basis_index": 0, "a": 1.0}, "field 'c' is missing"),
        ("affine", {**ok, "b": 2.0}, "field 'b' is not a parameter"),
        ("affine", {**ok, "basis_index": 1.5}, "field 'basis_index' must be an integer"),
        ("affine", {**ok, "basis_index": -1}, "field 'basis_index' must be >= 0"),
        ("nnls_log", {"weights": "abc", "c": 0.0}, "field 'weights' must be a list"),
        ("ridge", {"mu_b": [0.0], "sd_b": [1.0], "mu_f": [], "sd_f": [], "beta": [1.0],
                   "c": 0.0}, "field 'beta' has 1 entries, expected 2"),
        ("ensemble", {"members": [{"kind": TOY, "params": {"basis_index": 0, "a": None,
                                                           "c": 0.0}}]}, f"'{TOY}': field 'a'"),
        ("ensemble", {"members": [{"kind": "nope", "params": {}}]}, "unknown head kind"),
        ("ensemble", {"members": [{"kind": "affine", "params": ok}], "weights": [0.5, 0.5]},
         "field 'weights' must be 1 numbers"),
    ]
    for kind, params, message in cases:
        with pytest.raises(ParamsError, match=message):
            load(kind, params)
    with pytest.raises(ValueError, match="unknown head kind 'nope'"):
        load("nope", {})


def test_parsed_parameters_are_kept_least_recently_used_first(monkeypatch) -> None:
    """``HeadKind.parse`` validates a stored dict once; past the cache size the least
    recently used entries go, not the whole cache (the busiest devices stay parsed)."""
    from oracle_server.predictor.heads import base

    kind = heads.HEADS["affine"]
    calls = []
    real = kind.Params.from_dict

    def counting(name, params):
        calls.append(id(params))
        return real(name, params)

    monkeypatch.setattr(base, "_PARSED_CACHE_SIZE", 8)
    monkeypatch.setattr(base, "_PARSED", type(base._PARSED)())
    monkeypatch.setattr(kind.Params, "from_dict", staticmethod(counting))
    stored = [{"basis_index": 0, "a": 1.0 + i, "c": 0.0} for i in range(12)]
    hot = stored[0]
    for p in stored:  # the hot one is used between every other
        assert kind.parse(p).a == p["a"]
        kind.parse(hot)
    assert len(calls) == 12 and len(base._PARSED) == 8
    calls.clear()
    assert kind.parse(hot).a == 1.0 and kind.parse(stored[-1]).a == 12.0
    assert calls == []  # still parsed
    kind.parse(stored[1])  # evicted long ago: validated again
    assert calls == [id(stored[1])]
