"""The space language: definitions -> genes, strings, descriptors, torch networks, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from client_sdk.errors import AlreadyExists, InvalidArchitecture, InvalidArgument
from client_sdk.spaces import get_space, list_spaces, register_space, shipped_definitions
from client_sdk.spaces.defined import DefinedSpace, space_from_definition
from client_sdk.spaces.language import InvalidSpaceDefinition, load_text
from client_sdk.spaces.layers import descriptor_sum

TOY = {
    "name": "toy_space",
    "description": "a toy space for the tests",
    "input": {"channels": 3, "resolution": [32, 48]},
    "width": [0.5, 1.0],
    "stem": [{"op": "conv", "out": 16, "kernel": 3, "stride": 2, "act": "relu"}],
    "stages": [
        {"out": 16, "stride": 1, "depth": [1, 2], "block": {"op": "mbconv", "se": True},
         "choose": {"kernel": [3, 5], "expand": [1, 4]}},
        {"out": 32, "stride": 2, "depth": 2,
         "ops": [{"name": "a", "op": "conv", "kernel": 3},
                 {"name": "b", "op": "mbconv", "expand": 2, "groups": 2, "kernel": 3},
                 {"name": "s", "op": "skip"}],
         "first_ops": [{"name": "a", "op": "conv", "kernel": 3}]},
    ],
    "head": [{"op": "conv", "out": 64, "kernel": 1}, {"op": "pool"},
             {"op": "linear", "out": 10}],
}


@pytest.fixture(scope="module")
def toy() -> DefinedSpace:
    return space_from_definition(TOY)


def test_shipped_spaces_are_listed_and_load() -> None:
    assert {"mobilenetv2", "proxyless"} <= set(shipped_definitions())
    assert {"nasbench201", "fbnet", "ofa_mbv3", "mobilenetv2", "proxyless"} <= set(list_spaces())
    mb = get_space("mobilenetv2")
    assert mb.num_genes == 1 + 5 + 21 * 2  # resolution, 5 depth choices (the last fixed), k, e
    assert mb.gene_names[:2] == ("resolution", "depth0")
    px = get_space("proxyless")
    assert px.num_genes == 21 and px.cardinalities[0] == 6 and px.cardinalities[1] == 7


def test_genes_strings_round_trip(toy: DefinedSpace) -> None:
    assert toy.gene_names == ("resolution", "width", "depth0", "op2", "op3",
                              "kernel0", "kernel1", "expand0", "expand1")
    g = toy.sample(300, rng=0)
    strings = toy.format_many(g)
    assert strings[0].startswith("resolution=")
    np.testing.assert_array_equal(toy.parse_many(strings), g)
    joined = get_space("proxyless")
    gp = joined.sample(50, rng=1)
    s = joined.format_many(gp)
    assert "=" not in s[0] and len(s[0].split("-")) == 21
    np.testing.assert_array_equal(joined.parse_many(s), gp)


def test_canonical_form(toy: DefinedSpace) -> None:
    g = np.zeros((1, toy.num_genes), dtype=np.int16)
    g[0, toy.gene_names.index("depth0")] = 0  # depth 1: block 1 inactive
    g[0, toy.gene_names.index("kernel1")] = 1
    g[0, toy.gene_names.index("op3")] = 2  # skip
    canon = toy.validate(g)
    assert canon[0, toy.gene_names.index("kernel1")] == 0  # inactive block's gene reset
    px = get_space("proxyless")
    assert px.validate(px.sample(100, rng=3)).shape == (100, 21)


def test_parse_errors_name_the_gene() -> None:
    mb = get_space("mobilenetv2")
    s = mb.format(mb.sample(1, rng=0)[0])
    with pytest.raises(InvalidArchitecture, match="kernel"):
        mb.parse(s.replace("kernel=3", "kernel=4", 1) if "kernel=3" in s else
                 s.replace("kernel=5", "kernel=4", 1), index=7)
    with pytest.raises(InvalidArchitecture, match="missing"):
        mb.parse(s.split(" expand=")[0])
    with pytest.raises(InvalidArchitecture, match="bad part"):
        mb.parse(s + " extra=1")


@pytest.mark.parametrize("name", ["toy", "mobilenetv2", "proxyless"])
def test_descriptor_tables_equal_the_layer_lists(name: str, toy: DefinedSpace) -> None:
    sp = toy if name == "toy" else get_space(name)
    g = sp.sample(64, rng=5)
    d = sp.descriptors(g)
    per_layer = np.array([descriptor_sum(sp.layers(row)) for row in g])
    np.testing.assert_allclose(d[:, :6], per_layer, rtol=1e-12)
    np.testing.assert_allclose(d[:, 6:].sum(1), d[:, 0] + d[:, 1], rtol=1e-12)
    proj = np.random.default_rng(0).normal(size=(d.shape[1], 2))
    np.testing.assert_allclose(sp.descriptors(g, proj), d @ proj, rtol=1e-9)


@pytest.mark.parametrize("name", ["toy", "mobilenetv2", "proxyless"])
def test_torch_network_matches_the_analytic_counts(name: str, toy: DefinedSpace) -> None:
    torch = pytest.importorskip("torch")
    from client_sdk.measure.builders import build_model, count_parameters, example_input
    from client_sdk.measure.flops import count_macs

    sp = toy if name == "toy" else get_space(name)
    for row in sp.sample(2, rng=11):
        model = build_model(sp, row)
        x = example_input(sp, row)
        with torch.no_grad():
            assert model(x).shape[1] == sp.definition.head[-1].out
        assert count_parameters(model) == int(sp.params(row[None])[0])
        macs = count_macs(model, x)
        # the FLOP counter counts convs and linears only (the SE gate/pool are not MACs)
        assert macs == pytest.approx(float(sp.flops(row[None])[0]), rel=1e-6)


def _bad(path: str, value: object) -> dict:
    d = copy.deepcopy(TOY)
    node: object = d
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]  # type: ignore[index]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]
    return d


@pytest.mark.parametrize(("path", "value", "where", "why"), [
    ("stages.1.ops.1.op", "lstm", "stages[1].ops[1].op", "unknown op"),
    ("stages.0.choose.kernel", [3, 4], "stages[0].choose.kernel[1]", "odd"),
    ("stages.0.choose.expand", [], "stages[0].choose.expand", "empty"),
    ("stages.0.depth", [1, 1], "stages[0].depth", "repeated"),
    ("stages.0.colour", "red", "stages[0].colour", "unknown field"),
    ("name", "Bad Name", "name", "must match"),
    ("head.0", {"op": "linear", "out": 5}, "head[0].op", "pooled input"),
    ("stages.1.ops.1.groups", 3, "stages[1] block 1 (b)", "do not divide"),
])
def test_bad_definitions_name_the_path(path, value, where, why) -> None:
    with pytest.raises(InvalidSpaceDefinition, match=why) as info:
        space_from_definition(_bad(path, value))
    assert info.value.path == where
    assert isinstance(info.value, InvalidArgument)
    assert str(info.value).startswith(f"definition.{where}")


def test_too_large_spaces_and_files_are_refused() -> None:
    d = copy.deepcopy(TOY)
    d["stages"][0]["choose"]["kernel"] = list(range(1, 2049, 2))  # 1024 odd kernels > 15
    with pytest.raises(InvalidSpaceDefinition, match="kernel"):
        space_from_definition(d)
    d = copy.deepcopy(TOY)
    d["stages"][0]["depth"] = [1, 64]
    d["stages"] = [d["stages"][0]] * 5  # 320 block positions
    with pytest.raises(InvalidSpaceDefinition, match="block positions"):
        space_from_definition(d)
    with pytest.raises(InvalidSpaceDefinition, match="bytes"):
        load_text("#" * (1100 * 1024))
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    with pytest.raises(InvalidSpaceDefinition, match="aliases"):
        load_text(bomb)
    with pytest.raises(InvalidSpaceDefinition, match="not valid"):
        load_text("{not json")


def test_yaml_and_json_give_the_same_space(toy: DefinedSpace) -> None:
    from_yaml = space_from_definition(yaml.safe_dump(TOY))
    assert from_yaml.definition.canonical_json() == toy.definition.canonical_json()


def test_register_is_idempotent_and_versioned() -> None:
    d = copy.deepcopy(TOY)
    d["name"] = "toy_registered"
    a = register_space(d)
    assert register_space(copy.deepcopy(d)) is a
    assert get_space("toy_registered") is a
    d["stages"][0]["choose"]["kernel"] = [3, 5, 7]
    with pytest.raises(AlreadyExists, match="another definition"):
        register_space(d)
    d["name"] = "fbnet"
    with pytest.raises(AlreadyExists, match="bundled"):
        register_space(d)


def test_gene_order_does_not_depend_on_key_order(toy: DefinedSpace) -> None:
    """The server builds a space from its canonical JSON (sorted keys): the genes must be
    those of the file as written."""
    d = copy.deepcopy(TOY)
    d["stages"][0]["choose"] = {"expand": [1, 4], "kernel": [3, 5]}  # reversed
    other = space_from_definition(d)
    assert other.gene_names == toy.gene_names
    again = space_from_definition(toy.definition.canonical_json())
    assert again.gene_names == toy.gene_names
    g = toy.sample(20, rng=4)
    assert again.format_many(g) == toy.format_many(g)
