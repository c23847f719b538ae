"""Search operators keep genes in range and canonical; duplicates by canonical genes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymoo.core.population import Population

from client_sdk.search.operators import (
    CanonicalDuplicateElimination,
    CanonicalRepair,
    GeneMutation,
    GeneSampling,
    UniformGeneCrossover,
    gene_keys,
    to_genes,
)
from client_sdk.search.problem import EvaluationCache
from client_sdk.spaces import get_space, list_spaces

SPACES = list_spaces()


class _Prob:
    def __init__(self, space):
        self.n_var = space.num_genes


def _in_range_and_canonical(space, X):
    X = np.asarray(X)
    assert X.shape[1] == space.num_genes
    assert np.all(X >= 0) and np.all(space.cardinalities[None, :] > X)
    g = X.astype(np.int16)
    np.testing.assert_array_equal(space.canonicalize(g), g)


@pytest.mark.parametrize("name", SPACES)
def test_sampling_unique_in_range_canonical(name):
    space = get_space(name)
    X = GeneSampling(space)._do(_Prob(space), 200, random_state=np.random.default_rng(1))
    assert X.shape == (200, space.num_genes)
    _in_range_and_canonical(space, X)
    assert len(set(gene_keys(X.astype(np.int16)))) == 200


@pytest.mark.parametrize("name", SPACES)
def test_crossover_mutation_repair_in_range_canonical(name):
    space = get_space(name)
    rng = np.random.default_rng(0)
    parents = space.sample(100, rng).astype(np.int64)
    X = np.stack([parents[:50], parents[50:]])
    kids = UniformGeneCrossover(space)._do(_Prob(space), X, random_state=rng)
    assert kids.shape == (2, 50, space.num_genes)
    # each gene of a child comes from one of its parents, child 2 takes the other one
    assert np.all((kids[0] == X[0]) | (kids[0] == X[1]))
    assert np.all(np.where(kids[0] == X[0], kids[1] == X[1], kids[1] == X[0]))
    mutated = GeneMutation(space, prob_var=0.5)._do(_Prob(space), kids[0], random_state=rng)
    repaired = CanonicalRepair(space)._do(_Prob(space), mutated)
    _in_range_and_canonical(space, repaired)
    assert np.any(mutated != kids[0])


@pytest.mark.parametrize("name", SPACES)
def test_mutation_always_changes_selected_genes(name):
    space = get_space(name)
    rng = np.random.default_rng(3)
    X = space.sample(200, rng).astype(np.int64)
    out = GeneMutation(space, prob_var=1.0)._do(_Prob(space), X, random_state=rng)
    changeable = space.cardinalities[None, :] > 1
    assert np.all((out != X) | ~changeable)
    assert np.all(out >= 0) and np.all(out < space.cardinalities[None, :])


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(SPACES), data=st.data())
def test_repair_maps_any_real_matrix_into_canonical_range(name, data):
    space = get_space(name)
    n = data.draw(st.integers(1, 8))
    vals = data.draw(
        st.lists(st.floats(-5, 30, allow_nan=False), min_size=n * space.num_genes,
                 max_size=n * space.num_genes)
    )
    X = np.asarray(vals).reshape(n, space.num_genes)
    _in_range_and_canonical(space, CanonicalRepair(space)._do(_Prob(space), X))


def test_ofa_duplicates_are_canonical():
    space = get_space("ofa_mbv3")
    g = space.sample(1, np.random.default_rng(0)).astype(np.int64)
    g[0, 1:6] = 0  # all stages depth 2: blocks 2, 3 of each stage inactive
    g = space.canonicalize(g.astype(np.int16)).astype(np.int64)
    twin = g.copy()
    twin[0, 6 + 3] = 2  # kernel of an inactive block differs
    dedup = CanonicalDuplicateElimination(space)
    pop = Population.new("X", np.concatenate([g, twin]))
    assert len(dedup.do(pop)) == 1
    np.testing.assert_array_equal(to_genes(space, twin), g.astype(np.int16))


def test_duplicates_against_population_and_archive():
    space = get_space("nasbench201")
    genes = space.table.genes[:6]
    cache = EvaluationCache(space.num_genes, 1)
    nan = np.full((2, 1), np.nan)
    arrays = {"latency_ms": np.ones((2, 1)), "lower_ms": nan, "upper_ms": nan,
              "prob_within_budget": nan}
    cache.add(genes[:2], np.zeros(2), arrays, 0)
    dedup = CanonicalDuplicateElimination(space, seen=cache.contains)
    off = Population.new("X", genes.astype(np.int64))
    pop = Population.new("X", genes[2:3].astype(np.int64))
    kept = dedup.do(off, pop)
    np.testing.assert_array_equal(kept.get("X"), genes[3:].astype(np.int64))


def test_ordinal_genes_come_from_the_definition():
    """Numeric choices (resolution, width, depth, kernel, expand, groups) are ordinal: the
    mutation steps them +-1 half the time; ops are categorical (no space name decides)."""
    ofa, mbv2 = get_space("ofa_mbv3"), get_space("mobilenetv2")
    assert ofa.ordinal_genes.all() and mbv2.ordinal_genes.all()
    for name in ("nasbench201", "fbnet", "proxyless"):
        assert not get_space(name).ordinal_genes.any()
    X = np.ones((4000, ofa.num_genes), dtype=np.int64)  # the middle choice: +-1 both ways
    out = GeneMutation(ofa, prob_var=1.0)._do(_Prob(ofa), X, random_state=np.random.default_rng(0))
    steps = np.abs(out - X)[:, 6:] == 1  # kernels / expands: 3 choices, any reset is +-1
    assert steps.all()
    res = np.abs(out[:, 0] - X[:, 0])  # 25 resolutions: half the resets are +-1 steps
    assert 0.45 < np.mean(res == 1) < 0.6
