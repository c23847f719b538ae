"""FBNet and OFA-MobileNetV3 as space-language definitions equal the bundled classes.

``client_sdk/spaces/definitions/reference/{fbnet,ofa_mbv3}.yaml`` (named ``fbnet_def`` and
``ofa_mbv3_def``, not served) interpreted by ``DefinedSpace`` give the bundled spaces' genes,
choice labels, canonical forms, strings, descriptors (every column, per-stage MACs included),
FLOPs, params and torch networks: the step before retiring the hand-coded classes.
"""

from __future__ import annotations

import copy
from importlib import resources

import numpy as np
import pytest
import yaml

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces import get_space, list_spaces, shipped_definitions
from client_sdk.spaces.defined import DefinedSpace, space_from_definition
from client_sdk.spaces.descriptors import descriptor_names, descriptors
from client_sdk.spaces.language import InvalidSpaceDefinition

SPACES = ("fbnet", "ofa_mbv3")
N = 2000
RTOL = 1e-9


def reference_text(name: str) -> str:
    folder = resources.files("client_sdk.spaces") / "definitions" / "reference"
    return (folder / f"{name}.yaml").read_text()


@pytest.fixture(scope="module", params=SPACES)
def pair(request: pytest.FixtureRequest) -> tuple[DefinedSpace, object]:
    return space_from_definition(reference_text(request.param)), get_space(request.param)


@pytest.fixture(scope="module")
def raw_genes(pair: tuple[DefinedSpace, object]) -> np.ndarray:
    """Uniform random gene vectors, not canonical (inactive blocks keep random values)."""
    _, bundled = pair
    rng = np.random.default_rng(20260126)
    return rng.integers(0, bundled.cardinalities, size=(N, bundled.num_genes)).astype(np.int16)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=0)


def test_reference_definitions_are_not_served() -> None:
    for name in SPACES:
        sp = space_from_definition(reference_text(name))
        assert sp.name == f"{name}_def"
        assert sp.name not in shipped_definitions() and sp.name not in list_spaces()


def test_genes_and_choices_equal(pair) -> None:
    defined, bundled = pair
    assert defined.num_genes == bundled.num_genes
    np.testing.assert_array_equal(defined.cardinalities, bundled.cardinalities)
    assert defined.gene_names == bundled.gene_names
    assert defined.choices == bundled.choices
    assert defined.descriptor_names() == descriptor_names(bundled.name)


def test_canonical_genes_and_strings_equal(pair, raw_genes) -> None:
    defined, bundled = pair
    canon = bundled.validate(raw_genes)
    np.testing.assert_array_equal(defined.validate(raw_genes), canon)
    strings = [bundled.format(row) for row in canon]
    assert [defined.format(row) for row in canon] == strings
    assert defined.format_many(raw_genes) == bundled.format_many(raw_genes)
    np.testing.assert_array_equal(np.array([defined.parse(s) for s in strings]), canon)
    np.testing.assert_array_equal(defined.parse_many(strings), canon)
    # non-canonical strings (inactive blocks given other values) parse to the same genes
    raw_strings = [bundled.format(row) for row in raw_genes[:200]]
    np.testing.assert_array_equal(np.array([defined.parse(s) for s in raw_strings]),
                                  np.array([bundled.parse(s) for s in raw_strings]))


def test_descriptors_flops_params_equal(pair, raw_genes) -> None:
    defined, bundled = pair
    canon = bundled.validate(raw_genes)
    want = descriptors(bundled.name, canon)
    got = defined.descriptors(canon)
    assert got.shape == want.shape
    _close(got, want)  # every column, the per-stage MACs included
    _close(defined.flops(canon), bundled.flops(canon))
    _close(defined.params(canon), bundled.params(canon))
    proj = np.random.default_rng(1).normal(size=(want.shape[1], 3))
    np.testing.assert_allclose(defined.descriptors(canon, proj),
                               descriptors(bundled.name, canon, proj), rtol=1e-9, atol=1e-3)


def test_table_archs_equal(pair) -> None:
    """The bundled table's (measured) architectures: same strings and descriptors."""
    defined, bundled = pair
    genes = bundled.table.genes[:N]
    strings = [bundled.format(row) for row in genes]
    assert [defined.format(row) for row in genes] == strings
    np.testing.assert_array_equal(defined.parse_many(strings), genes)
    _close(defined.descriptors(genes), descriptors(bundled.name, genes))


def test_torch_networks_count_the_same(pair) -> None:
    torch = pytest.importorskip("torch")
    from client_sdk.measure.builders import build_model, count_parameters, example_input
    from client_sdk.measure.flops import count_macs

    defined, bundled = pair
    row = bundled.sample(1, rng=7)[0]
    a, b = build_model(defined, row), build_model(bundled, row)
    xa, xb = example_input(defined, row), example_input(bundled, row)
    assert xa.shape == xb.shape
    with torch.no_grad():
        assert a(xa).shape == b(xb).shape
    assert count_parameters(a) == count_parameters(b) == int(defined.params(row[None])[0])
    assert count_macs(a, xa) == count_macs(b, xb) == pytest.approx(
        float(defined.flops(row[None])[0]), rel=1e-9)


# ------------------------------------------------------- the language extensions
def _ofa() -> dict:
    return yaml.safe_load(reference_text("ofa_mbv3"))


def _fbnet() -> dict:
    return yaml.safe_load(reference_text("fbnet"))


def _edit(d: dict, path: str, value: object) -> dict:
    d = copy.deepcopy(d)
    node: object = d
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]  # type: ignore[index]
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value  # type: ignore[index]
    return d


@pytest.mark.parametrize(("base", "path", "value", "where", "why"), [
    (_ofa, "format.keys.kernel", "bad key", "format.keys.kernel", "characters"),
    (_ofa, "format.keys.kernel", "r", "format.keys.kernel", "also the key"),
    (_ofa, "format.keys.colour", "c", "format.keys.colour", "unknown field"),
    (_ofa, "format.keys.op", "o", "format.keys.op", "no 'op' genes"),
    (_ofa, "format.style", "csv", "format.style", "keyed"),
    (_ofa, "format", {"style": "joined", "keys": {"depth": "d"}}, "format.keys", "only a keyed"),
    (_ofa, "head.2.bias", "no", "head[2].bias", "true or false"),
    (_ofa, "head.0.bias", False, "head[0].bias", "only a linear"),
    (_fbnet, "gene_prefix.op", "Block", "gene_prefix.op", "must match"),
    (_fbnet, "gene_prefix.kernel", "k", "gene_prefix.kernel", "no 'kernel' genes"),
    (_ofa, "gene_prefix", {"kernel": "expand"}, "gene_prefix", "given twice"),
])
def test_extension_errors_name_the_path(base, path, value, where, why) -> None:
    with pytest.raises(InvalidSpaceDefinition, match=why) as info:
        space_from_definition(_edit(base(), path, value))
    assert info.value.path == where


def test_plain_and_keyed_formats_still_work() -> None:
    d = _edit(_ofa(), "format", "keyed")
    sp = space_from_definition(d)
    s = sp.format(sp.sample(1, rng=0)[0])
    assert s.startswith("resolution=") and " kernel=" in s
    np.testing.assert_array_equal(sp.parse(s), sp.validate(sp.parse(s)[None])[0])
    keyed = space_from_definition(_ofa())
    with pytest.raises(InvalidArchitecture, match=r"expected each of r=\.\.\., d="):
        keyed.parse(s)  # the keys of this space are r, d, k, e
