"""OracleProblem: one RPC per generation, cache, objectives, constraints."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from client_sdk.search import OracleProblem, search, table_accuracy
from client_sdk.spaces import get_space

NB201 = get_space("nasbench201")


class FakeClient:
    """Duck-typed ``client.rank``: table latency (``flops`` proxy off-table), call log."""

    def __init__(self, interval: float | None = None, fail_on_call: int | None = None) -> None:
        self.calls: list[dict] = []
        self.interval = interval
        self.fail_on_call = fail_on_call

    def rank(self, space, archs, devices, max_latency_ms=None, return_uncertainty=False):
        if self.fail_on_call is not None and len(self.calls) + 1 >= self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        sp = get_space(space)
        archs = np.asarray(archs)
        self.calls.append({"space": space, "archs": archs.copy(), "devices": list(devices)})
        rows = sp.table_rows(archs)
        lat = {}
        for dev in devices:
            col = sp.table.device_column(dev.rpartition("/")[2])
            lat[dev] = np.where(rows >= 0, col[rows], sp.flops(archs) / 1e7)
        out = SimpleNamespace(latency_ms=lat)
        if return_uncertainty and self.interval is not None:
            out.lower_ms = {d: v * (1 - self.interval) for d, v in lat.items()}
            out.upper_ms = {d: v * (1 + self.interval) for d, v in lat.items()}
            out.prob_within_budget = {d: np.full(len(v), 0.5) for d, v in lat.items()}
        return out

    @property
    def num_archs(self) -> int:
        return sum(len(c["archs"]) for c in self.calls)


def make_problem(client, devices=("pixel3",), **kwargs) -> OracleProblem:
    return OracleProblem(client, NB201, list(devices), table_accuracy(NB201, "cifar10"), **kwargs)


def test_one_rpc_per_generation_all_devices():
    client = FakeClient()
    devices = ["pixel3", "nasbench201/raspi4"]
    res = search(client, "nasbench201", devices, evaluations=320, population=64, progress=False)
    assert res.generations == 5
    assert res.num_rpcs == len(client.calls) == 5
    assert res.num_evaluations == client.num_archs == 320
    assert all(c["devices"] == devices for c in client.calls)
    ranked = np.concatenate([c["archs"] for c in client.calls])
    assert len(np.unique(ranked, axis=0)) == len(ranked)  # nothing ranked twice
    assert set(res.front.latency_ms) == set(devices)


def test_cache_prevents_reranking():
    client = FakeClient()
    problem = make_problem(client)
    genes = NB201.sample(30, np.random.default_rng(0))
    genes = np.unique(genes, axis=0)
    out1 = problem.evaluate(genes[:20].astype(float), return_as_dictionary=True)
    assert len(client.calls) == 1
    out2 = problem.evaluate(genes[:20].astype(float), return_as_dictionary=True)
    assert len(client.calls) == 1  # all cached: no RPC at all
    np.testing.assert_array_equal(out1["F"], out2["F"])
    problem.evaluate(np.concatenate([genes[:20], genes[20:], genes[20:]]).astype(float))
    assert len(client.calls) == 2
    np.testing.assert_array_equal(client.calls[1]["archs"], genes[20:])  # uncached, once each
    assert len(problem.cache) == len(genes)


def test_objectives_are_accuracy_and_latency():
    problem = make_problem(FakeClient(), devices=("pixel3", "raspi4"))
    genes = NB201.table.genes[:10]
    F = problem.evaluate(genes.astype(float), return_values_of=["F"])
    np.testing.assert_allclose(F[:, 0], -NB201.table.accuracy["cifar10"][:10])
    np.testing.assert_allclose(F[:, 1], NB201.table.device_column("pixel3")[:10])
    np.testing.assert_allclose(F[:, 2], NB201.table.device_column("raspi4")[:10])


def test_worst_mode_single_normalised_objective():
    problem = make_problem(FakeClient(), devices=("pixel3", "raspi4"), latency_mode="worst")
    assert problem.n_obj == 2
    genes = NB201.table.genes[:50]
    F = problem.evaluate(genes.astype(float), return_values_of=["F"])
    lat = NB201.table.latency_ms[:50][:, [NB201.table.devices.index(d) for d in problem.devices]]
    expected = np.max(lat / np.median(lat, axis=0), axis=1)
    np.testing.assert_allclose(F[:, 1], expected)


def test_constraints_per_device():
    problem = make_problem(
        FakeClient(), devices=("pixel3", "raspi4"), max_latency_ms={"raspi4": 10.0}
    )
    assert problem.n_ieq_constr == 1
    genes = NB201.table.genes[:10]
    G = problem.evaluate(genes.astype(float), return_values_of=["G"])
    np.testing.assert_allclose(G[:, 0], NB201.table.device_column("raspi4")[:10] - 10.0)
    with pytest.raises(ValueError, match="not searched"):
        make_problem(FakeClient(), max_latency_ms={"fpga": 1.0})


@pytest.mark.parametrize("budget", [5.0, {"pixel3": 12.0, "raspi4": 20.0}])
def test_front_respects_max_latency(budget):
    devices = ["pixel3", "raspi4"]
    res = search(FakeClient(), "nasbench201", devices, evaluations=256, population=32,
                 max_latency_ms=budget, progress=False)
    assert len(res.front) > 0
    for dev in devices:
        limit = budget if isinstance(budget, float) else budget[dev]
        assert np.all(res.front.latency_ms[dev] <= limit)


@pytest.mark.parametrize("name", ["fbnet", "ofa_mbv3"])
def test_custom_objective_on_other_spaces(name):
    space = get_space(name)
    dev = space.table.devices[0]
    calls: list[int] = []

    def proxy(genes):
        calls.append(len(genes))
        return np.log(space.params(genes))

    res = search(FakeClient(), name, [dev], objective=proxy, evaluations=96,
                 population=32, progress=False)
    assert res.num_evaluations == 96 == sum(calls)
    assert res.front.objective == "proxy"
    np.testing.assert_array_equal(space.canonicalize(res.front.genes), res.front.genes)


def test_unknown_table_metric_is_rejected():
    with pytest.raises(ValueError, match="no bundled accuracy"):
        search(FakeClient(), "fbnet", ["x"], objective="cifar10", progress=False)
