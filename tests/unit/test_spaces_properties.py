"""Property tests over random gene vectors of every search space (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces import GENE_DTYPE, get_space

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")
PROPS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def batches(draw, name: str, max_size: int = 6) -> np.ndarray:
    """A batch of valid (not necessarily canonical) gene vectors of space ``name``.

    Genes come from a drawn seed (drawing 46 integers one by one through hypothesis is
    ~10x slower); a drawn mode pins them to the range ends now and then.
    """
    space = get_space(name)
    n = draw(st.integers(1, max_size), label="n")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    mode = draw(st.sampled_from(["uniform", "uniform", "min", "max", "ends"]), label="mode")
    rng = np.random.default_rng(seed)
    card = space.cardinalities[None, :]
    genes = rng.integers(0, card, size=(n, space.num_genes))
    if mode == "min":
        genes[:] = 0
    elif mode == "max":
        genes = np.broadcast_to(card - 1, genes.shape).copy()
    elif mode == "ends":
        genes = np.where(rng.random(genes.shape) < 0.5, 0, card - 1)
    return genes.astype(GENE_DTYPE)


def per_space(test):
    """``test(name, data)`` as a property test (``PROPS``) of every space of ``SPACES``."""
    return pytest.mark.parametrize("name", SPACES)(PROPS(given(data=st.data())(test)))


def gene_vectors(name: str) -> st.SearchStrategy[np.ndarray]:
    return batches(name, max_size=1).map(lambda b: b[0])


@st.composite
def bad_value(draw, card: int):
    kind = draw(st.sampled_from(["negative", "too_large", "fraction"]))
    if kind == "negative":
        return draw(st.integers(-30_000, -1))
    if kind == "too_large":
        return draw(st.integers(card, 30_000))
    whole = draw(st.integers(-1, card))
    return whole + draw(st.sampled_from([0.5, 0.25, 0.999, 1e-6]))


@per_space
def test_parse_format_roundtrip_is_canonical(name, data):
    space = get_space(name)
    g = data.draw(gene_vectors(name))
    canonical = space.canonicalize(g[None])[0]
    text = space.format(g)
    parsed = space.parse(text)
    np.testing.assert_array_equal(parsed, canonical)
    assert parsed.dtype == GENE_DTYPE
    assert space.format(parsed) == space.format(canonical)
    np.testing.assert_array_equal(space.parse(space.format(parsed)), parsed)
    np.testing.assert_array_equal(space.canonicalize(canonical[None])[0], canonical)  # idempotent


@per_space
def test_validate_accepts_valid_batches(name, data):
    space = get_space(name)
    genes = data.draw(batches(name))
    out = space.validate(genes)
    assert out.dtype == GENE_DTYPE and out.shape == genes.shape
    np.testing.assert_array_equal(out, space.canonicalize(genes))
    np.testing.assert_array_equal(space.validate(genes.tolist()), out)
    np.testing.assert_array_equal(space.validate(genes.astype(np.float32)), out)
    np.testing.assert_array_equal(space.validate(out), out)


@per_space
def test_invalid_mutation_is_rejected_precisely(name, data):
    space = get_space(name)
    genes = data.draw(batches(name)).astype(np.float64)
    i = data.draw(st.integers(0, genes.shape[0] - 1), label="row")
    j = data.draw(st.integers(0, space.num_genes - 1), label="gene")
    value = data.draw(bad_value(int(space.cardinalities[j])), label="value")
    genes[i, j] = value
    if isinstance(value, int):
        genes = genes.astype(np.int64)
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(genes)
    assert (exc.value.index, exc.value.gene) == (i, j)
    assert f"'{space.gene_names[j]}'" in str(exc.value)
    assert f"allowed 0..{int(space.cardinalities[j]) - 1}" in str(exc.value)


@per_space
def test_invalid_string_mutation_is_rejected(name, data):
    """Replacing one choice in the string form by a foreign token names the right gene."""
    space = get_space(name)
    g = data.draw(gene_vectors(name))
    j = data.draw(st.integers(0, space.num_genes - 1), label="gene")
    token = data.draw(
        st.sampled_from(["bogus", "9", "0", "-", "conv", "nor_conv_5x5", "k9_e9"]), label="token"
    )
    if token in space.choices[j]:
        return
    labels = [space.choices[k][int(v)] for k, v in enumerate(g)]
    labels[j] = token
    text = _render(name, labels)
    with pytest.raises(InvalidArchitecture) as exc:
        space.parse(text, index=5)
    assert exc.value.index == 5
    if token != "-":  # '-' is also the list separator: the count check fires first
        assert exc.value.gene == j
        assert ", ".join(space.choices[j]) in str(exc.value)


def _render(name: str, labels: list[str]) -> str:
    if name == "nasbench201":
        a, b, c, d, e, f = labels
        return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
    if name == "fbnet":
        return "-".join(labels)
    return (
        f"r={labels[0]} d={'-'.join(labels[1:6])} k={'-'.join(labels[6:26])} "
        f"e={'-'.join(labels[26:46])}"
    )


@per_space
def test_features_deterministic_and_row_independent(name, data):
    space = get_space(name)
    genes = space.validate(data.draw(batches(name)))
    x = space.features(genes)
    np.testing.assert_array_equal(space.features(genes.copy()), x)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    for r in range(len(genes)):
        np.testing.assert_array_equal(space.features(genes[r : r + 1])[0], x[r])
    np.testing.assert_array_equal(space.features(genes[::-1]), x[::-1])
    assert (space.flops(genes) > 0).all() and (space.params(genes) > 0).all()


@PROPS
@given(data=st.data())
def test_ofa_inactive_blocks_are_invisible(data):
    space = get_space("ofa_mbv3")
    a = data.draw(gene_vectors("ofa_mbv3"))
    b = data.draw(gene_vectors("ofa_mbv3"))
    active = space.active_mask(a[None])[0]
    mixed = a.copy()
    for start in (6, 26):
        block = slice(start, start + 20)
        mixed[block] = np.where(active, a[block], b[block])
    pair = np.stack([a, mixed])
    np.testing.assert_array_equal(space.canonicalize(pair)[0], space.canonicalize(pair)[1])
    assert space.format(space.canonicalize(pair)[0]) == space.format(space.canonicalize(pair)[1])
    np.testing.assert_array_equal(space.parse(space.format(mixed)), space.parse(space.format(a)))
    np.testing.assert_array_equal(space.features(pair)[0], space.features(pair)[1])
    assert space.flops(pair)[0] == space.flops(pair)[1]
    assert space.params(pair)[0] == space.params(pair)[1]
