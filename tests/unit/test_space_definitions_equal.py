"""The bundled spaces served from space-language definitions equal the retired classes.

FBNet and OFA-MobileNetV3 are served from ``client_sdk/spaces/definitions/{fbnet,ofa_mbv3}
.yaml`` (their measured tables named by ``table:``, OFA's features by ``features:``): their
genes, tables, canonical forms, strings, descriptors (every column), model features, FLOPs
and params are pinned to digests of what the hand-coded ``FBNet`` / ``OFAMobileNetV3``
classes gave, and the networks ``build_model`` measures count what the definitions count.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces import get_space, list_spaces, shipped_definitions
from client_sdk.spaces.defined import DefinedSpace, space_from_definition
from client_sdk.spaces.descriptors import descriptors
from client_sdk.spaces.language import InvalidSpaceDefinition
from tests.helpers import edited, user_copy

SPACES = ("fbnet", "ofa_mbv3")
#: digests (sha256, 16 hex) of what the retired hand-coded classes gave (``_digests``)
GOLDEN = {
    "fbnet": {
        "table_genes": "bb5d515bf07a2649", "desc_table": "76a01b31e5455cdd",
        "desc_raw": "b339fea386d53e40", "features_table": "89329fde6db161b3",
        "flops_raw": "0d1ae022262c50cf", "params_raw": "663f84388f935845",
        "strings": "5b5bcb0510c21e2f",
    },
    "ofa_mbv3": {
        "table_genes": "8c773dabf97adfcd", "desc_table": "2a0d9b552616dcce",
        "desc_raw": "0ae9917181ebf287", "features_table": "1d7f525354c4fb7b",
        "features_raw": "eb70967f0f25b85c", "valid_raw": "b7e325dbc48ae2f9",
        "flops_raw": "6e618a4fc76207dd", "params_raw": "308322798f6222f5",
        "strings": "d2b7d8088d5323b4",
    },
}


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _digests(sp) -> dict[str, str]:
    rng = np.random.default_rng(20260126)
    raw = rng.integers(0, sp.cardinalities, size=(2000, sp.num_genes)).astype(np.int16)
    g = sp.table.genes
    return {
        "table_genes": _digest(g.astype(np.int16)),
        "desc_table": _digest(descriptors(sp.name, g)),
        "desc_raw": _digest(descriptors(sp.name, sp.validate(raw))),
        "features_table": _digest(sp.features(g)),
        "features_raw": _digest(sp.features(raw)),
        "valid_raw": _digest(sp.validate(raw)),
        "flops_raw": _digest(sp.flops(raw)), "params_raw": _digest(sp.params(raw)),
        "strings": hashlib.sha256("\n".join(sp.format_many(g)).encode()).hexdigest()[:16],
    }


@pytest.mark.parametrize("name", SPACES)
def test_served_from_the_definition_bit_for_bit(name: str) -> None:
    sp = get_space(name)
    assert isinstance(sp, DefinedSpace) and sp.has_table and sp.num_architectures == 5000
    got = _digests(sp)
    assert {k: got[k] for k in GOLDEN[name]} == GOLDEN[name]


def test_gene_names() -> None:
    assert get_space("fbnet").gene_names == tuple(f"block{i}" for i in range(22))
    assert get_space("ofa_mbv3").gene_names == (
        "resolution", *(f"depth{s}" for s in range(5)), *(f"kernel{b}" for b in range(20)),
        *(f"expand{b}" for b in range(20)))


def test_tables_are_the_bundled_csv() -> None:
    from client_sdk.data import load_table

    for name in SPACES:
        sp, raw = get_space(name), load_table(name)
        np.testing.assert_array_equal(sp.table.index, raw.index)
        np.testing.assert_array_equal(sp.table.latency_ms, raw.latency_ms)
        assert sp.table.devices == raw.devices
    fb, raw = get_space("fbnet"), load_table("fbnet")
    for j in (0, 7, 21):
        assert [fb.choices[j][v] for v in fb.table.genes[:50, j]] == \
            raw.arch_columns[f"block{j}"][:50]


@pytest.mark.parametrize("name", SPACES)
def test_measured_networks_count_as_the_definition(name: str) -> None:
    """``build_model`` measures FBNet's network from its definition and OFA's reference
    network (``measure.ofa``); both, and the definition's generic network, count the
    definition's parameters and MACs (FBNet: as its hand-coded reference network)."""
    pytest.importorskip("torch")
    from client_sdk.measure import defined, fbnet
    from client_sdk.measure.builders import build_model, count_parameters, example_input
    from client_sdk.measure.flops import count_macs

    sp = get_space(name)
    for row in sp.sample(2, rng=7):
        nets = [build_model(name, row), defined.build(sp, row).eval()]
        if name == "fbnet":
            nets.append(fbnet.build(row))
        x = example_input(name, row)
        for net in nets:
            assert count_parameters(net) == int(sp.params(row[None])[0])
            assert count_macs(net, x) == pytest.approx(float(sp.flops(row[None])[0]), rel=1e-9)


def test_fbnet_layout_module_reads_the_definition() -> None:
    from client_sdk.spaces import fbnet as layout

    sp = get_space("fbnet")
    row = sp.sample(1, rng=3)[0]
    blocks = sum(layout.block_cost(layout.OPS[v], *blk)[0]
                 for v, blk in zip(row, layout.block_layout(), strict=True))
    zero = sum(layout.block_cost(layout.OPS[0], *blk)[0] for blk in layout.block_layout())
    assert blocks - zero == pytest.approx(
        float(sp.flops(row[None])[0] - sp.flops(np.zeros((1, 22), np.int16))[0]), rel=1e-12)


def test_bundled_names_stay_bundled() -> None:
    from client_sdk.errors import AlreadyExists
    from client_sdk.spaces import register_space

    assert list_spaces()[:3] == ["nasbench201", "fbnet", "ofa_mbv3"]
    for name in SPACES:
        with pytest.raises(AlreadyExists, match="bundled"):
            register_space(shipped_definitions()[name])  # not even the same definition
        # the served definition is accepted as itself (a server answers it idempotently)
        assert space_from_definition(shipped_definitions()[name]).name == name


# ------------------------------------------------------- the language extensions
def _ofa() -> dict:
    return user_copy("ofa_mbv3", "ofa_copy")


def _fbnet() -> dict:
    return yaml.safe_load(shipped_definitions()["fbnet"])


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
        space_from_definition(edited(base(), path, value))
    assert info.value.path == where


def test_plain_and_keyed_formats_still_work() -> None:
    d = edited(_ofa(), "format", "keyed")
    sp = space_from_definition(d)
    s = sp.format(sp.sample(1, rng=0)[0])
    assert s.startswith("resolution=") and " kernel=" in s
    np.testing.assert_array_equal(sp.parse(s), sp.validate(sp.parse(s)[None])[0])
    keyed = space_from_definition(_ofa())
    with pytest.raises(InvalidArchitecture, match=r"expected 'r=<resolution> d=<5 depth"):
        keyed.parse(s)  # the keys of this space are r, d, k, e


# ------------------------------------------------------------------- the table hook
@pytest.mark.parametrize(("path", "value", "where", "why"), [
    ("table.name", "imagenet", "table.name", "unknown bundled table"),
    ("table.genes", {}, "table.genes", "maps no gene group"),
    ("table.genes", {"kernel": "k{p}"}, "table.genes.kernel", "no 'kernel' genes"),
    ("table.genes.op", "block {p}", "table.genes.op", "column name"),
    ("table.genes.op", 3, "table.genes.op", "column name"),
    ("table.colour", "red", "table.colour", "unknown field"),
])
def test_table_hook_errors_name_the_path(path, value, where, why) -> None:
    with pytest.raises(InvalidSpaceDefinition, match=why) as info:
        space_from_definition(edited(_fbnet(), path, value))
    assert info.value.path == where


def test_table_hook_needs_every_group_and_no_p_on_a_single_gene() -> None:
    from client_sdk.spaces.defined import check_consistency
    from client_sdk.spaces.language import validate_definition

    d = edited(_ofa(), "table", {"name": "ofa_mbv3", "genes": {"kernel": "kernel_sizes"}})
    with pytest.raises(InvalidSpaceDefinition, match="resolution, depth, expand") as info:
        check_consistency(validate_definition(d))
    assert info.value.path == "table.genes"
    d = edited(d, "table.genes", {"resolution": "res{p}", "depth": "depths",
                                 "kernel": "kernel_sizes", "expand": "expand_ratios"})
    with pytest.raises(InvalidSpaceDefinition, match="one gene") as info:
        check_consistency(validate_definition(d))
    assert info.value.path == "table.genes.resolution"


def test_table_hook_only_in_the_bundled_definition() -> None:
    d = edited(_fbnet(), "name", "my_fbnet")
    with pytest.raises(InvalidSpaceDefinition, match="bundled space's own") as info:
        space_from_definition(d)
    assert info.value.path == "table"
    d = edited(_fbnet(), "description", "another fbnet")
    with pytest.raises(InvalidSpaceDefinition, match="bundled space's own"):
        space_from_definition(d)


def test_table_hook_loads_columns_checked() -> None:
    """Loading checks every column and cell (errors name the column, the row and value);
    a joined column (OFA's) feeds a whole gene group."""
    from client_sdk.spaces.defined import check_consistency
    from client_sdk.spaces.language import validate_definition

    def load(d: dict):
        return check_consistency(validate_definition(d)).table

    with pytest.raises(InvalidSpaceDefinition, match="no column 'op0'") as info:
        load(edited(_fbnet(), "table.genes.op", "op{p}"))
    assert info.value.path == "table.genes.op"
    d = _fbnet()
    d["stages"][0]["ops"] = d["stages"][0]["ops"][:8]  # no 'skip' in block 0
    with pytest.raises(InvalidSpaceDefinition, match=r"row \d+ of column 'block0' holds 'skip'"):
        load(d)
    ofa = edited(_ofa(), "table", {"name": "ofa_mbv3", "genes": {
        "resolution": "resolution", "depth": "depths", "kernel": "kernel_sizes",
        "expand": "expand_ratios"}})
    table, bundled = load(ofa), get_space("ofa_mbv3").table
    np.testing.assert_array_equal(table.genes, bundled.genes)
    np.testing.assert_array_equal(table.latency_ms, bundled.latency_ms)
    with pytest.raises(InvalidSpaceDefinition, match="holds 1 value"):
        load(edited(ofa, "table.genes.depth", "resolution"))


# --------------------------------------------------------------- model features
def test_tree_tables_rebuild_the_features_of_definitions() -> None:
    """The tree tables' variables (effective genes, extra features) rebuild the features of
    the served spaces bit for bit, OFA's zeroed one-hot and input area included."""
    from oracle_server.predictor import tree_tables

    for name in SPACES:
        sp = get_space(name)
        raw = np.random.default_rng(4).integers(0, sp.cardinalities, size=(500, sp.num_genes))
        for genes in (raw.astype(np.int16), sp.validate(raw), sp.table.genes[:500]):
            tree_tables.check_features(sp, genes)
    ofa = get_space("ofa_mbv3")
    layout = tree_tables.staged_costs(ofa)
    assert layout is not None and tree_tables.position_costs(get_space("fbnet")) is not None


def test_feature_options() -> None:
    fb = get_space("fbnet")
    assert fb.zeroed_genes(fb.table.genes[:3]) is None and fb.resolution_area(
        fb.table.genes[:3]) is None
    plain = space_from_definition(edited(_ofa(), "features", {"inactive": "keep"}))
    genes = plain.sample(50, rng=3)
    assert plain.features(genes).shape[1] == int(plain.cardinalities.sum()) + 2
    assert plain.zeroed_genes(genes) is None
    with pytest.raises(InvalidSpaceDefinition, match="one of keep, zero") as info:
        space_from_definition(edited(_ofa(), "features", {"inactive": "drop"}))
    assert info.value.path == "features.inactive"
    with pytest.raises(InvalidSpaceDefinition, match="unknown field") as info:
        space_from_definition(edited(_ofa(), "features", {"width": "area"}))
    assert info.value.path == "features.width"


def test_active_mask() -> None:
    from client_sdk.spaces import ofa_mbv3 as layout

    ofa, fb = get_space("ofa_mbv3"), get_space("fbnet")
    genes = ofa.sample(300, rng=5)
    np.testing.assert_array_equal(ofa.active_mask(genes), layout.active_mask(genes))
    zeroed = ofa.zeroed_genes(genes)
    np.testing.assert_array_equal(zeroed[:, layout.KERNEL_GENES], ~ofa.active_mask(genes))
    assert not zeroed[:, :6].any()
    assert fb.active_mask(fb.table.genes[:10]).all()
