"""NAS-Bench-201 served from its cell-space definition equals the retired class, and the
language's cell form (``spaces.language_cells``, ``spaces.cells``) on a user's cell space.

``client_sdk/spaces/definitions/nasbench201.yaml`` replaced the hand-coded ``NASBench201``
class: its names, table (genes, NATS index, latencies, accuracies), descriptors (every
column, also folded by a matrix), FLOPs, params, features, strings both ways, parse and
validation errors, sampling, native forms, degenerate flags, the transfer (rich)
descriptors and the torch network are pinned to digests of what the class gave on all
15,625 architectures (``GOLDEN``, computed before the class was deleted).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml

from client_sdk.errors import InvalidArchitecture, InvalidSpaceDefinition
from client_sdk.spaces import formats as F
from client_sdk.spaces import get_space, shipped_definitions
from client_sdk.spaces.cells import CellSpace
from client_sdk.spaces.defined import space_from_definition
from client_sdk.spaces.descriptors import degenerate, descriptor_names, descriptors
from client_sdk.spaces.layers import descriptor_sum
from tests.helpers import edited, user_copy

#: digests (sha256, 16 hex) of what the retired ``NASBench201`` class gave (``_digests``)
GOLDEN = {
    "names": "56a04f365a40e539",
    "table_genes": "6be02a2cfffe9e0c",
    "table_index": "11c319ed0be3808a",
    "table_latency": "0eb06e2d7c57db4f",
    "table_meta": "61ca63834b707e6e",
    "accuracy": "bab74da474df3c73",
    "desc": "e6e22fea4f108183",
    "desc_matrix": "88950d277c992b0f",
    "flops": "56a8faa4600c8c15",
    "params": "2c3fd493ba6627ff",
    "features": "ce167d05ca4406e5",
    "strings": "83abc799e45cf34e",
    "parsed": "6be02a2cfffe9e0c",
    "parsed_lenient": "8fa33680394ca69d",
    "sample": "7da0e6e2942ce752",
    "valid": "06258c786b22c1d3",
    "errors": "3ef8241d66a6248d",
    "degenerate": "de29d8aba6c89f7e",
    "rows": "11c319ed0be3808a",
    "index_form": "06258c786b22c1d3",
    "index_of": "cc62bacc6a49485d",
    "ops_form": "c399f9c17482471d",
    "ops_parse": "7aa4e6d314f4eeb2",
    "info": "506cce882f478743",
    "rich": "7d8ce5c5b99ae8c7",
}
#: the torch network (module tree, parameter shapes, counts, traced descriptors)
GOLDEN_TORCH = "819f776fed29ca9e"

BAD = [
    "",
    "|none~0|",
    "|none~0|+|none~0|none~1|",
    "|x~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~0|+|none~0|none~1|none~2|+|none~0|none~1|none~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|",
    "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~02|",
    "|none|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~0|+|none~0|none~1|\n+|none~0|none~1|none~2|",
    "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~0|+|none~0|NONE~1|+|none~0|none~1|none~2|",
    "|none~0|+|none~0||none~1|+|none~0|none~1|none~2|",
    5,
    None,
    "r=224 d=2-2-2-2-2",
    "k3_e1-skip",
]
BAD_GENES = [
    [[0, 0, 0, 0, 0, 5]],
    [[0, 0, 0, 0, 0]],
    [[0, 0, 0, 0.5, 0, 0]],
    [[-1, 0, 0, 0, 0, 0]],
    [[0] * 6, [1] * 5],
]
BAD_NATIVE = [
    ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "bad"],
    [3, 99999],
    [["none"] * 6, ["none"] * 5],
    [["none"] * 5 + ["conv"]],
]


def _digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _text(items) -> str:
    return hashlib.sha256("\n".join(map(str, items)).encode()).hexdigest()[:16]


def _errors(sp) -> list[str]:
    out = []
    for call, cases in (
        (lambda a: sp.parse(a, index=3), BAD),
        (sp.validate, BAD_GENES),
        (lambda a: F.to_genes(sp, a), BAD_NATIVE),
    ):
        for a in cases:
            try:
                call(a)
                out.append("ok")
            except InvalidArchitecture as e:
                out.append(f"{e}|{e.index}|{e.gene}")
    return out


def _digests(sp) -> dict[str, str]:
    from oracle_server.predictor.transfer_features import rich_descriptors

    g = sp.table.genes
    m_int = np.random.default_rng(20260126).integers(-3, 4, size=(9, 4)).astype(np.float64)
    strings = sp.format_many(g)
    return {
        "names": _text(
            [
                sp.name,
                sp.description,
                *sp.gene_names,
                *map(str, sp.choices),
                sp.cardinalities.tolist(),
                sp.space_size,
                sp.num_architectures,
                descriptor_names("nasbench201"),
            ]
        ),
        "table_genes": _digest(g.astype(np.int16)),
        "table_index": _digest(sp.table.index),
        "table_latency": _digest(sp.table.latency_ms),
        "table_meta": _text([*sp.table.devices, *sorted(sp.table.accuracy)]),
        "accuracy": _digest(np.stack([sp.table.accuracy[k] for k in sorted(sp.table.accuracy)])),
        "desc": _digest(descriptors(sp.name, g)),
        "desc_matrix": _digest(descriptors(sp.name, g, m_int)),
        "flops": _digest(sp.flops(g)),
        "params": _digest(sp.params(g)),
        "features": _digest(sp.features(g)),
        "strings": _text(strings),
        "parsed": _digest(sp.parse_many(strings)),
        "parsed_lenient": _digest(sp.parse_many([" " + s + "\n" for s in strings[:300]])),
        "sample": _digest(sp.sample(1000, rng=5)),
        "valid": _digest(sp.validate(g[::-1].astype(np.int64))),
        "errors": _text(_errors(sp)),
        "degenerate": _digest(degenerate(sp.name, g)),
        "rows": _digest(sp.table_rows(g)),
        "index_form": _digest(F.to_genes(sp, np.arange(15625)[::-1].copy())),
        "index_of": _digest(F.from_genes(sp, g[::7], "index")),
        "ops_form": _text(F.from_genes(sp, g[::5], "ops")),
        "ops_parse": _digest(F.to_genes(sp, F.from_genes(sp, g[::5], "ops"))),
        "info": _text(sorted((k, str(v)) for k, v in sp.info().items() if k != "definition")),
        "rich": _digest(rich_descriptors(sp.name, g)),
    }


def test_served_from_the_definition_bit_for_bit() -> None:
    sp = get_space("nasbench201")
    assert isinstance(sp, CellSpace) and sp.has_table and sp.num_architectures == 15_625
    assert _digests(sp) == GOLDEN


def test_torch_network_as_the_class_built_it() -> None:
    pytest.importorskip("torch")
    from client_sdk.measure.builders import build_model, count_parameters, example_input
    from client_sdk.measure.flops import count_macs
    from client_sdk.measure.layers import network_descriptors

    sp = get_space("nasbench201")
    g = sp.table.genes
    parts: list = []
    for row in (g[0], g[-1], g[1234], g[7777], g[15000], g[3125]):
        net = build_model(sp, row)
        x = example_input(sp, row)
        parts.append([(n, tuple(p.shape)) for n, p in net.named_parameters()])
        parts.append(
            [
                (n, type(m).__name__, str(m) if not list(m.children()) else "")
                for n, m in net.named_modules()
                if n
            ]
        )
        parts.append([count_parameters(net), count_macs(net, x), tuple(x.shape)])
        parts.append(network_descriptors(net, tuple(x.shape)).tolist())
    assert _text(parts) == GOLDEN_TORCH


def test_descriptors_are_the_layer_lists() -> None:
    sp = get_space("nasbench201")
    genes = sp.sample(20, rng=1)
    want = np.array([descriptor_sum(sp.layers(row)) for row in genes])
    np.testing.assert_array_equal(descriptors("nasbench201", genes)[:, :6], want)


# ---------------------------------------------------------------- the cell form
def _nb201() -> dict:
    return user_copy("nasbench201", "my_cells")


def _tiny() -> dict:
    """A user's cell space: 3 nodes, 3 edges, 3 ops, 2 stages, no table."""
    return edited(
        edited(
            edited(
                _nb201(),
                "cell",
                {
                    "nodes": 3,
                    "edges": [[1, 0], [2, 0], [2, 1]],
                    "ops": [
                        {"name": "zero", "op": "zero"},
                        {"name": "conv3", "op": "conv", "kernel": 3},
                        {"name": "pool", "op": "avg_pool", "kernel": 3},
                    ],
                },
            ),
            "stages",
            [{"out": 8, "depth": 2}, {"out": 16, "depth": 1, "stride": 2, "reduction": "resnet"}],
        ),
        "format",
        "cell",
    ) | {"stem": [{"op": "conv", "out": 8, "kernel": 3, "act": "relu"}]}


@pytest.mark.parametrize(
    ("path", "value", "where", "why"),
    [
        ("cell.edges", [[1, 0], [2, 1], [2, 0], [3, 0], [3, 1], [3, 2]], "cell.edges[2]", "order"),
        ("cell.edges", [[1, 0], [3, 0], [3, 1]], "cell.edges", r"node\(s\) \[2\]"),
        ("cell.edges.0", [1, 1], "cell.edges[0][1]", "integer in 0..0"),
        ("cell.nodes", 1, "cell.nodes", "integer in 2..16"),
        ("cell.ops.2.op", "sep_conv", "cell.ops[2].op", "unknown cell op"),
        ("cell.ops.4", {"name": "p", "op": "avg_pool"}, "cell.ops[4].kernel", "required"),
        ("cell.ops.1.kernel", 3, "cell.ops[1].kernel", "takes no 'kernel'"),
        ("cell.ops.1.name", "none", "cell.ops[1].name", "duplicate"),
        ("stages.1.reduction", None, "stages[1].stride", "stride 2 needs one"),
        ("stages.1.reduction", "pool", "stages[1].reduction", "unknown reduction"),
        ("stages.0.out", 32, "stages[0].out", "cells keep their channels"),
        ("stages.0.depth", [2, 3], "stages[0].depth", "integer"),
        ("head.0", {"op": "pool"}, "head[1].op", "convs and norms, a pool"),
        ("head.2", {"op": "norm"}, "head[2].op", "convs and norms, a pool"),
        ("head.0", {"op": "norm", "out": 3}, "head[0].out", "unknown field"),
        ("stem.0", {"op": "mbconv", "out": 16, "expand": 3}, "stem[0].op", "takes no mbconv"),
        ("format", "keyed", "format", "'cell'"),
        ("format", {"style": "cell", "native": "ofa_subnet"}, "format.native", "ofa_subnet needs"),
        ("format", {"style": "cell", "example": 3}, "format.example", "1-200 characters"),
        ("width", [0.5, 1.0], "width", "takes no 'width'"),
        ("input.resolution", [32, 64], "input.resolution", "one resolution"),
    ],
)
def test_cell_errors_name_the_path(path, value, where, why) -> None:
    d = edited(_nb201(), path, value)
    if value is None:
        d = edited(d, "stages.1", {k: v for k, v in d["stages"][1].items() if k != "reduction"})
    with pytest.raises(InvalidSpaceDefinition, match=why) as info:
        space_from_definition(d)
    assert info.value.path == where


def test_cell_string_form_only_for_cells_and_odd_sides_refused() -> None:
    ofa = yaml.safe_load(shipped_definitions()["ofa_mbv3"])
    del ofa["table"]
    with pytest.raises(InvalidSpaceDefinition, match="only a cell space") as info:
        space_from_definition(edited(ofa, "format", "cell"))
    assert info.value.path == "format"
    with pytest.raises(InvalidSpaceDefinition, match="even input side") as info:
        space_from_definition(edited(_nb201(), "input.resolution", 30))
    assert info.value.path == "stages[2].reduction"
    with pytest.raises(InvalidSpaceDefinition, match=r"genes.*or the string column") as info:
        space_from_definition(
            edited(
                yaml.safe_load(shipped_definitions()["nasbench201"]), "table.genes", {"op": "op{p}"}
            )
        )


def test_a_users_cell_space() -> None:
    """Genes, strings both ways, descriptors (= its layer lists), degenerate flags and the
    torch network (= its analytic counts) of a cell space nobody hand-coded."""
    sp = space_from_definition(_tiny())
    assert isinstance(sp, CellSpace) and not sp.has_table
    assert sp.gene_names == ("edge_1<-0", "edge_2<-0", "edge_2<-1")
    assert sp.space_size == 27 and sp.num_architectures == 0
    genes = np.array(list(np.ndindex(3, 3, 3)), dtype=np.int16)
    strings = sp.format_many(genes)
    assert strings[5] == "|zero~0|+|conv3~0|pool~1|"
    np.testing.assert_array_equal(sp.parse_many(strings), genes)
    np.testing.assert_array_equal(sp.parse_many([s + " " for s in strings]), genes)
    with pytest.raises(InvalidArchitecture, match=r"e.g. \|...~0\|\+\|...~0\|...~1\|"):
        sp.parse("|zero~0|")
    want = np.array([descriptor_sum(sp.layers(row)) for row in genes])
    np.testing.assert_array_equal(sp.descriptors(genes)[:, :6], want)
    # output reachable only through a live edge (zero = dead): 2<-0, or 1<-0 then 2<-1
    reach = (genes[:, 1] != 0) | ((genes[:, 0] != 0) & (genes[:, 2] != 0))
    np.testing.assert_array_equal(sp.degenerate(genes), ~reach)
    pytest.importorskip("torch")
    from client_sdk.measure.builders import build_model, count_parameters, example_input
    from client_sdk.measure.flops import count_macs

    for row in genes[::7]:
        net = build_model(sp, row)
        x = example_input(sp, row)
        assert count_parameters(net) == int(sp.params(row[None])[0])
        assert count_macs(net, x) == pytest.approx(float(sp.flops(row[None])[0]), rel=1e-12)


def test_norm_in_a_block_space() -> None:
    """``norm`` (a standalone BN + act) in the head of a block space: descriptors are its
    layer lists and the torch network counts what the definition counts."""
    d = yaml.safe_load(shipped_definitions()["mobilenetv2"])
    d["name"] = "mbv2_norm"
    d["head"].insert(1, {"op": "norm", "act": "relu6"})
    sp = space_from_definition(d)
    genes = sp.sample(3, rng=0)
    want = np.array([descriptor_sum(sp.layers(row)) for row in genes])
    np.testing.assert_allclose(sp.descriptors(genes)[:, :6], want, rtol=1e-12)
    base = get_space("mobilenetv2")
    assert (sp.params(genes) - base.params(genes) == 2 * 1280).all()
    with pytest.raises(InvalidSpaceDefinition, match="norm after pooling") as info:
        space_from_definition(
            {**d, "head": [d["head"][0], {"op": "pool"}, {"op": "norm"}, d["head"][-1]]}
        )
    assert info.value.path == "head[2].op"
    pytest.importorskip("torch")
    from client_sdk.measure.builders import build_model, count_parameters

    assert count_parameters(build_model(sp, genes[0])) == int(sp.params(genes[:1])[0])


def test_bundled_name_and_shipped_definition() -> None:
    from client_sdk.errors import AlreadyExists
    from client_sdk.spaces import register_space

    with pytest.raises(AlreadyExists, match="bundled"):
        register_space(shipped_definitions()["nasbench201"])
    assert space_from_definition(shipped_definitions()["nasbench201"]).name == "nasbench201"
    with pytest.raises(InvalidSpaceDefinition, match="bundled space's own") as info:
        space_from_definition(
            edited(yaml.safe_load(shipped_definitions()["nasbench201"]), "description", "mine")
        )
    assert info.value.path == "table"
