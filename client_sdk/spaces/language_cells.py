"""The cell form of the space language: a fixed DAG whose edges are choices (NAS-Bench-201).

A definition with a ``cell`` is a cell space: every stage repeats one cell, and the genes
are the cell's edges (one gene per edge, the same in every cell of the network):

```yaml
cell:
  nodes: 4                        # node 0 is the cell input, the last node its output
  edges: [[1, 0], [2, 0], [2, 1], [3, 0], [3, 1], [3, 2]]   # [to, from], sorted
  ops:                            # the candidates of every edge, in gene-value order
    - {name: none, op: zero}      # multiply by zero (executed: one element-wise kernel)
    - {name: skip_connect, op: skip}                   # identity (executes nothing)
    - {name: nor_conv_3x3, op: conv, kernel: 3}        # act-conv-BN, act: relu default
    - {name: avg_pool_3x3, op: avg_pool, kernel: 3}    # stride 1, 'same' padding
stem: [{op: conv, out: 16, kernel: 3, act: none}]
stages:                           # cells keep their channels and resolution
  - {out: 16, depth: 5}           # depth: the number of cells (an int)
  - {out: 32, depth: 5, stride: 2, reduction: resnet}  # a reduction block first
head: [{op: norm, act: relu}, {op: pool}, {op: linear, out: 10}]
format: {style: cell, example: "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|"}
```

A node sums its incoming edges' outputs (an element-wise add per extra edge); every node
1..last needs an incoming edge. ``reduction: resnet`` is the ResNet basic block of
NAS-Bench-201 between stages: act-conv-BN 3x3 (stride 2), act-conv-BN 3x3, and a shortcut
of a 2x2 average pool (counted as one element per output, as the bundled NB-201
descriptors do) and a 1x1 conv without BN, then the add; the stage's ``stride`` is 2 with
it and 1 without (then ``out`` must equal the incoming channels). Gene ``j`` is edge ``j``,
named ``edge_{to}<-{from}``. The string form (``style: cell``) writes each node as
``|op~from|...|`` in edge order, nodes joined by '+' (``|none~0|+|none~0|none~1|+...``);
``example`` is shown in its parse errors. A cell space has one input resolution and no
``width``, ``gene_prefix`` or ``features``. The interpreter is ``spaces.cells.CellSpace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from client_sdk.errors import InvalidSpaceDefinition

CELL_OPS = ("zero", "skip", "conv", "avg_pool")
REDUCTIONS = ("resnet",)
MAX_NODES = 16


@dataclass(frozen=True)
class CellOp:
    """One candidate operation of an edge."""

    name: str
    op: str  # one of CELL_OPS
    kernel: int = 1
    act: str = "relu"  # conv: the activation before it (act-conv-BN)


@dataclass(frozen=True)
class Cell:
    nodes: int
    edges: tuple[tuple[int, int], ...]  # (to, from), sorted
    ops: tuple[CellOp, ...]

    def sources(self, node: int) -> list[tuple[int, int]]:
        """(gene, from) of the edges into ``node``, in gene order."""
        return [(j, src) for j, (to, src) in enumerate(self.edges) if to == node]


def _cell_op(d: Any, path: str) -> CellOp:
    from client_sdk.spaces.language import _LABEL, ACTS, _keys, check_field

    _keys(d, path, {"name", "op", "kernel", "act"}, ("name", "op"))
    name = d["name"]
    if not isinstance(name, str) or not _LABEL.match(name):
        raise InvalidSpaceDefinition(
            f"{path}.name", f"must be 1-32 characters of [A-Za-z0-9_.+], got {name!r}"
        )
    op = d["op"]
    if op not in CELL_OPS:
        raise InvalidSpaceDefinition(
            f"{path}.op", f"unknown cell op {op!r} (known: {', '.join(CELL_OPS)})"
        )
    sized = op in ("conv", "avg_pool")
    if sized and "kernel" not in d:
        raise InvalidSpaceDefinition(f"{path}.kernel", f"is required for op {op}")
    for key, ok in (("kernel", sized), ("act", op == "conv")):
        if key in d and not ok:
            raise InvalidSpaceDefinition(f"{path}.{key}", f"op {op} takes no '{key}'")
    act = d.get("act", "relu")
    if act not in ACTS:
        raise InvalidSpaceDefinition(
            f"{path}.act", f"unknown activation {act!r} (known: {', '.join(ACTS)})"
        )
    kernel = check_field("kernel", d["kernel"], f"{path}.kernel") if sized else 1
    return CellOp(name, op, kernel, act)


def parse_cell(v: Any) -> Cell:
    """``cell``: ``{nodes, edges: [[to, from], ...], ops: [{name, op, ...}, ...]}``."""
    from client_sdk.spaces.language import MAX_CHOICES, MAX_GENES, _int, _keys

    d = _keys(v, "cell", {"nodes", "edges", "ops"}, ("nodes", "edges", "ops"))
    nodes = _int(d["nodes"], "cell.nodes", 2, MAX_NODES)
    raw = d["edges"]
    if not isinstance(raw, list) or not raw:
        raise InvalidSpaceDefinition("cell.edges", "must be a non-empty list of [to, from]")
    if len(raw) > MAX_GENES:
        raise InvalidSpaceDefinition("cell.edges", f"{len(raw)} edges; at most {MAX_GENES}")
    edges: list[tuple[int, int]] = []
    for i, e in enumerate(raw):
        path = f"cell.edges[{i}]"
        if not isinstance(e, list) or len(e) != 2:
            raise InvalidSpaceDefinition(path, f"must be [to, from], got {e!r}")
        to = _int(e[0], f"{path}[0]", 1, nodes - 1)
        src = _int(e[1], f"{path}[1]", 0, to - 1)
        if edges and (to, src) <= edges[-1]:
            raise InvalidSpaceDefinition(
                path,
                f"[{to}, {src}] repeats or breaks the order of the edges (sorted by [to, from])",
            )
        edges.append((to, src))
    missing = sorted(set(range(1, nodes)) - {to for to, _ in edges})
    if missing:
        raise InvalidSpaceDefinition("cell.edges", f"node(s) {missing} have no incoming edge")
    ops_raw = d["ops"]
    if not isinstance(ops_raw, list) or not ops_raw:
        raise InvalidSpaceDefinition("cell.ops", "must be a non-empty list of candidates")
    if len(ops_raw) > MAX_CHOICES:
        raise InvalidSpaceDefinition("cell.ops", f"{len(ops_raw)} choices; at most {MAX_CHOICES}")
    ops = tuple(_cell_op(x, f"cell.ops[{i}]") for i, x in enumerate(ops_raw))
    names = [op.name for op in ops]
    dup = next((i for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise InvalidSpaceDefinition(
            f"cell.ops[{dup}].name", f"duplicate candidate name {names[dup]!r}"
        )
    return Cell(nodes, tuple(edges), ops)


def parse_cell_stage(d: Any, path: str):  # -> spaces.language.Stage
    """A stage of a cell space: ``{out, depth (cells), stride: 1|2, reduction}``."""
    from client_sdk.spaces.language import Stage, _int, _keys

    _keys(d, path, {"out", "depth", "stride", "reduction"}, ("out", "depth"))
    out = _int(d["out"], f"{path}.out", 1, 1 << 16)
    depth = _int(d["depth"], f"{path}.depth", 1, 64)
    stride = _int(d.get("stride", 1), f"{path}.stride", 1, 2)
    reduction = d.get("reduction")
    if reduction is not None and reduction not in REDUCTIONS:
        raise InvalidSpaceDefinition(
            f"{path}.reduction", f"unknown reduction {reduction!r} (known: {', '.join(REDUCTIONS)})"
        )
    if (stride == 2) != (reduction is not None):
        raise InvalidSpaceDefinition(
            f"{path}.reduction" if reduction else f"{path}.stride",
            "a reduction block has stride 2, and stride 2 needs one (reduction: resnet)",
        )
    return Stage(out, stride, (depth,), {}, (), None, None, reduction)


def check_cell_definition(data: Mapping[str, Any], d) -> None:
    """What a cell space does not take (``d``: the ``Definition``), and its fixed layers:
    convs and norms before the pool, linears after it."""
    for key in ("width", "gene_prefix", "features"):
        if key in data:
            raise InvalidSpaceDefinition(key, "a cell space takes no " + repr(key))
    if len(d.resolutions) > 1:
        raise InvalidSpaceDefinition("input.resolution", "a cell space has one resolution")
    if d.format != "cell":
        raise InvalidSpaceDefinition(
            "format", f"a cell space's strings are 'cell', not {d.format!r}"
        )
    for part, layers in (("stem", d.stem), ("head", d.head)):
        for i, b in enumerate(layers):
            if b.op in ("conv", "norm") or (part == "head" and b.op in ("pool", "linear")):
                continue
            raise InvalidSpaceDefinition(
                f"{part}[{i}].op", f"a cell space's {part} takes no {b.op}"
            )
