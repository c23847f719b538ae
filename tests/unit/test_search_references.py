"""front_references: n distinct valid genes, deterministic per seed, from the accurate region."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.search.references import MODES, candidate_pool, front_references, pareto_layers
from client_sdk.spaces import get_space

NB201 = get_space("nasbench201")
ACC = NB201.table.accuracy["cifar10"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [1, 10, 25])
def test_returns_n_distinct_valid_genes(mode, n):
    genes = front_references(NB201, n, "cifar10", mode=mode)
    assert genes.shape == (n, NB201.num_genes)
    assert len(np.unique(genes, axis=0)) == n
    rows = NB201.table_rows(genes)
    assert np.all(rows >= 0)
    assert np.array_equal(NB201.canonicalize(genes), genes)


@pytest.mark.parametrize("mode", MODES)
def test_deterministic_per_seed(mode):
    a = front_references(NB201, 10, mode=mode, seed=3)
    b = front_references(NB201, 10, mode=mode, seed=3)
    c = front_references(NB201, 10, mode=mode, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("mode", MODES)
def test_prefers_accurate_architectures(mode):
    genes = front_references(NB201, 10, mode=mode, top=0.1)
    picked = ACC[NB201.table_rows(genes)]
    rng = np.random.default_rng(0)
    random = ACC[rng.choice(len(ACC), size=(200, 10))].mean(axis=1)
    assert picked.mean() > np.percentile(random, 99)


def test_spread_over_the_latency_hint():
    genes = front_references(NB201, 10, mode="layers", top=0.1)
    flops = NB201.flops(genes)
    all_flops = NB201.flops(NB201.table.genes)
    # references from the low and high ends of the hint, not one latency level
    assert flops.min() < np.quantile(all_flops, 0.25) < np.quantile(all_flops, 0.75) < flops.max()


def test_user_callable_pool_and_hint():
    pool = NB201.sample(2000, 1)
    pool = np.unique(pool, axis=0)
    params = NB201.params

    def acc(g):
        return np.log(params(g))

    hint = -np.arange(len(pool), dtype=float)  # any per-pool latency proxy
    genes = front_references(NB201, 8, acc, latency_hint=hint, pool=pool, mode="binned")
    assert genes.shape == (8, NB201.num_genes)
    assert np.all((genes[:, None, :] == pool[None]).all(axis=2).any(axis=1))


def test_pareto_layers_contains_the_first_front_and_enough():
    pool = candidate_pool(NB201)
    acc, hint = ACC[NB201.table_rows(pool)], NB201.flops(pool)
    mask = pareto_layers(acc, hint, 500)
    assert mask.sum() >= 500
    best = np.argmax(acc)  # the most accurate architecture is on the first layer
    assert mask[best]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        front_references(NB201, 10, mode="nope")
    with pytest.raises(ValueError):
        front_references(NB201, 10, top=0.0)
    with pytest.raises(ValueError):
        front_references(NB201, 10, latency_hint=np.ones(3))
    with pytest.raises(ValueError):
        front_references(NB201, 0)
