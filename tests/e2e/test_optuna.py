"""Optuna (real, >= 5) driving a multi-objective NAS against a real server: batched ask,
ONE Rank RPC per batch, tell."""

from __future__ import annotations

import numpy as np
import pytest

optuna = pytest.importorskip(
    "optuna", minversion="5", reason="the Optuna integration needs the [optuna] extra"
)

from client_sdk.integrations.optuna import (  # noqa: E402
    GENES_ATTR,
    OracleOptuna,
    optimize,
)
from client_sdk.search.results import pareto_mask  # noqa: E402
from client_sdk.spaces import get_space  # noqa: E402

SPACE = get_space("nasbench201")
DEVICES = ["pixel3", "1080ti_1"]


@pytest.fixture(autouse=True)
def _quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


class CountingClient:
    """Wraps the real client and records every Rank call's batch size."""

    def __init__(self, client) -> None:
        self.client = client
        self.batches: list[int] = []

    def rank(self, space, archs, devices, **kw):
        self.batches.append(len(archs))
        return self.client.rank(space, archs, devices, **kw)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_optuna_study_one_rpc_per_batch(client, sampler: str, capsys) -> None:
    counting = CountingClient(client)
    budget = {"pixel3": 12.0}
    batch = 16
    nas = OracleOptuna(counting, "nasbench201", DEVICES, "cifar10", max_latency_ms=budget,
                       sampler=sampler, population=batch, seed=1)
    expected_sampler = optuna.samplers.NSGAIISampler if sampler == "nsga2" else (
        optuna.samplers.TPESampler)
    assert isinstance(nas.study.sampler, expected_sampler)
    nas.optimize(n_trials=4 * batch, batch_size=batch)
    assert capsys.readouterr().err == ""  # stderr is not a terminal: no progress frames

    trials = nas.study.trials
    assert len(trials) == nas.num_trials == 4 * batch
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # at most one RPC per batch, each carrying only architectures never ranked before
    assert nas.num_rpcs == len(counting.batches) <= 4
    assert sum(counting.batches) == nas.num_evaluations <= 4 * batch

    # values told = accuracy from the table + the oracle's latency for the trial's genes
    genes = np.array([t.user_attrs[GENES_ATTR] for t in trials], dtype=np.int16)
    np.testing.assert_array_equal(nas.genes_of([t.params for t in trials]), genes)
    direct = client.rank("nasbench201", genes, DEVICES)
    values = np.array([t.values for t in trials])
    acc = SPACE.table.accuracy["cifar10"][SPACE.table_rows(genes)]
    np.testing.assert_allclose(values[:, 0], acc)
    for j, dev in enumerate(DEVICES):
        np.testing.assert_allclose(values[:, 1 + j], direct.latency_ms[dev], rtol=1e-6)
    slack = np.array([t.constraints["latency_ms[pixel3]"] for t in trials])
    assert all(set(t.constraints) == {"latency_ms[pixel3]"} for t in trials)
    np.testing.assert_allclose(slack, values[:, 1] - 12.0, rtol=1e-5)
    # Optuna's own constrained Pareto set is feasible
    best = nas.study.best_trials
    assert best and all(t.constraints["latency_ms[pixel3]"] <= 0 for t in best)

    # the front: feasible, non-dominated over everything ranked
    front = nas.front()
    assert len(front) >= 1
    assert np.all(front.latency_ms["pixel3"] <= 12.0)
    arch = nas.archive()
    ok = arch["feasible"]
    F = np.column_stack([-arch["accuracy"], *(arch["latency_ms"][d] for d in DEVICES)])[ok]
    assert len(front) == int(pareto_mask(F).sum())


def test_optimize_by_evaluations_and_user_sampler(client) -> None:
    nas = optimize(client, "nasbench201", "pixel3", n_evaluations=40, population=16,
                   sampler=optuna.samplers.RandomSampler(seed=0))
    assert nas.num_evaluations == 40
    assert len(nas.study.directions) == 2
    with pytest.raises(ValueError, match="objectives"):
        OracleOptuna(client, "nasbench201", DEVICES, study=nas.study)
    with pytest.raises(ValueError, match="sampler"):
        OracleOptuna(client, "nasbench201", DEVICES, sampler="cmaes")
