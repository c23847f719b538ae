"""``CellSpace``: a cell space interpreted from a definition with a ``cell`` (NAS-Bench-201).

The language of the cell form is ``spaces.language_cells``. Gene ``j`` is the op of edge
``j`` in every cell; isomorphic cells are not merged (the canonical form is the identity).
A cell space is a ``DefinedSpace`` whose block positions are the cell's edges: its
descriptor tables hold, per (edge, op), the rows of that op summed over every cell of the
network (``cell_entries``, read by ``spaces.defined_tables``), so descriptors, FLOPs,
params and features are the same gather-sums as for any definition. The string form is
``|op~from|...|`` per node, nodes joined by '+'; ``degenerate`` flags the cells whose output
no path of non-``zero`` edges reaches. The torch network is ``client_sdk.measure.cells``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence

import numpy as np

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces.base import GENE_DTYPE, lookup_choice
from client_sdk.spaces.defined import DefinedSpace, Position
from client_sdk.spaces.defined_tables import KEEPS_CHANNELS, _check_block, fixed_layers
from client_sdk.spaces.language import Definition, InvalidSpaceDefinition
from client_sdk.spaces.language_cells import CellOp
from client_sdk.spaces.layers import Layer, conv, eltwise

_NODE_RE = re.compile(r"^\|(.*)\|\Z")


def op_layers(op: CellOp, channels: int, size: int) -> list[Layer]:
    """The executed layers of one edge's op at ``channels`` x ``size`` x ``size``."""
    if op.op == "zero":  # x * 0: one element-wise kernel
        return [eltwise(channels, size, reads=1)]
    if op.op == "skip":
        return []
    if op.op == "avg_pool":
        area = size * size
        return [Layer("pool", channels, channels, area, area, op.kernel * op.kernel)]
    return [conv(channels, channels, op.kernel, 1, size)]


def resnet_layers(c_in: int, c_out: int, size: int) -> list[Layer]:
    """The ``resnet`` reduction block at input side ``size``: act-conv-BN 3x3 stride 2,
    act-conv-BN 3x3, shortcut 2x2 average pool (one element per output) + 1x1 conv (no
    BN), the add."""
    out = (size + 1) // 2
    return [
        conv(c_in, c_out, 3, 2, size),
        conv(c_out, c_out, 3, 1, out),
        Layer("pool", c_in, c_in, size * size, out * out, 1),
        conv(c_in, c_out, 1, 1, out, bn=False),
        eltwise(c_out, out),
    ]


def cell_entries(sp: CellSpace) -> Iterator[tuple[int, int | None, int, list[Layer]]]:
    """Every entry of a cell space's descriptor tables, in forward order: ``(0, flat row or
    None for the fixed part, stage, layers)``; an (edge, op) row comes once per cell."""
    d, cell = sp.definition, sp.definition.cell
    assert cell is not None
    k = len(cell.ops)
    c, size = d.channels, d.resolutions[0]
    for b in d.stem:
        c_out = c if b.op in KEEPS_CHANNELS else b.out
        yield 0, None, 0, fixed_layers(b, c, c_out, b.stride, size)
        c, size = c_out, (size + b.stride - 1) // b.stride
    for s, st in enumerate(d.stages):
        if st.reduction is not None:
            yield 0, None, s, resnet_layers(c, st.out, size)
            c, size = st.out, (size + 1) // 2
        for _ in range(st.depths[0]):
            for node in range(1, cell.nodes):
                sources = cell.sources(node)
                for j, _src in sources:
                    for o, op in enumerate(cell.ops):
                        yield 0, j * k + o, s, op_layers(op, c, size)
                yield 0, None, s, [eltwise(c, size) for _ in sources[1:]]  # the node's sum
    last = len(d.stages) - 1
    for b in d.head:
        c_out = c if b.op in KEEPS_CHANNELS else b.out
        yield 0, None, last, fixed_layers(b, c, c_out, b.stride, size)
        c, size = c_out, (1 if b.op == "pool" else (size + b.stride - 1) // b.stride)


class CellSpace(DefinedSpace):
    """A cell space from a definition (``spaces.language_cells``)."""

    _canon_noop = True  # isomorphic cells are not merged: canonical genes are the genes

    def __init__(self, definition: Definition) -> None:
        self.definition = d = definition
        cell = d.cell
        assert cell is not None
        self.name = d.name
        self.description = d.description
        self.has_table = d.table is not None
        self._res_gene = self._width_gene = None
        self._depth_genes: dict[int, int] = {}
        edges = range(len(cell.edges))
        self.positions = tuple(Position(0, j, (j,), ("op",)) for j in edges)
        self.gene_names = tuple(f"edge_{to}<-{src}" for to, src in cell.edges)
        self.gene_numbers = tuple(edges)
        labels = tuple(op.name for op in cell.ops)
        self._values = self.choices = (labels,) * len(cell.edges)
        self.cardinalities = np.full(len(cell.edges), len(labels), dtype=np.int64)
        self.group_keys = ("op",)

    def walk(self, genes: Sequence[int]) -> Iterator:
        raise NotImplementedError("a cell space has no block walk: see layers()")

    def layers(self, genes: Sequence[int]) -> list[Layer]:
        """The executed layer list of one gene vector, in forward order."""
        k = len(self.definition.cell.ops)  # type: ignore[union-attr]
        chosen = {j * k + int(v) for j, v in enumerate(genes)}
        return [
            layer
            for _, index, _, layers in cell_entries(self)
            if index is None or index in chosen
            for layer in layers
        ]

    def degenerate(self, genes: np.ndarray) -> np.ndarray:
        """(n,) bool: the cell's output node is unreachable from its input through edges
        whose op is not ``zero`` (some runtimes prune such networks to almost nothing)."""
        cell = self.definition.cell
        assert cell is not None
        zero = np.array([op.op == "zero" for op in cell.ops])
        live = ~zero[np.asarray(genes, dtype=np.int64)]
        reach = [np.ones(len(live), dtype=bool)]
        for node in range(1, cell.nodes):
            r = np.zeros(len(live), dtype=bool)
            for j, src in cell.sources(node):
                r |= reach[src] & live[:, j]
            reach.append(r)
        return ~reach[-1]

    # ----------------------------------------------------------------- strings
    @functools.cached_property
    def _pieces(self) -> list[tuple[str, ...]]:
        """Per gene, per choice: its text after the string's opening '|' (``op~from|``,
        then ``+|`` after a node's last edge but the output node's)."""
        cell = self.definition.cell
        assert cell is not None
        out = []
        for j, (to, src) in enumerate(cell.edges):
            last = j + 1 == len(cell.edges) or cell.edges[j + 1][0] != to
            tail = "+|" if last and to < cell.nodes - 1 else ""
            out.append(tuple(f"{label}~{src}|{tail}" for label in self.choices[j]))
        return out

    @functools.cached_property
    def _example(self) -> str:
        cell = self.definition.cell
        assert cell is not None
        return self.definition.format_example or "+".join(
            "|" + "|".join(f"...~{src}" for _, src in cell.sources(node)) + "|"
            for node in range(1, cell.nodes)
        )

    def format(self, genes: np.ndarray) -> str:
        return "|" + "".join(p[int(v)] for p, v in zip(self._pieces, genes, strict=True))

    def format_many(self, genes: np.ndarray) -> list[str]:
        """``format`` of a batch: per-gene texts gathered by column, joined per row."""
        genes = self.validate(genes)
        cols = [
            np.asarray(p, dtype=object).take(genes[:, j].astype(np.intp))
            for j, p in enumerate(self._pieces)
        ]
        return ["|" + "".join(t) for t in zip(*cols, strict=True)]

    def parse(self, arch: str, index: int = 0) -> np.ndarray:
        if not isinstance(arch, str):
            raise InvalidArchitecture(f"expected a string, got {type(arch).__name__}", index=index)
        cell = self.definition.cell
        assert cell is not None
        nodes = arch.strip().split("+")
        if len(nodes) != cell.nodes - 1:
            raise InvalidArchitecture(
                f"expected {cell.nodes - 1} nodes separated by '+' (e.g. {self._example}), "
                f"got {len(nodes)} in '{arch}'",
                index=index,
            )
        genes = np.empty(self.num_genes, dtype=GENE_DTYPE)
        for node, text in enumerate(nodes, start=1):
            m = _NODE_RE.match(text)
            if not m:
                raise InvalidArchitecture(f"node {node} '{text}' must be '|...|'", index=index)
            edges = m.group(1).split("|")
            sources = cell.sources(node)
            if len(edges) != len(sources):
                raise InvalidArchitecture(
                    f"node {node} must have {len(sources)} incoming edges, got {len(edges)}",
                    index=index,
                )
            for (gene, src), edge in zip(sources, edges, strict=True):
                op, sep, inp = edge.partition("~")
                if not sep or inp != str(src):
                    raise InvalidArchitecture(
                        f"edge '{edge}' of node {node} must read 'op~{src}'", index=index, gene=gene
                    )
                genes[gene] = lookup_choice(op, self.choices[gene], index, gene, "operation")
        return genes


def check_cells(d: Definition) -> CellSpace:
    """Checks a cell definition as a whole (channels, sides, head order) and returns its
    space; ``spaces.defined.check_consistency`` runs the checks every space shares and
    builds its tables."""
    c, size = d.channels, d.resolutions[0]
    for i, b in enumerate(d.stem):
        c_out = c if b.op in KEEPS_CHANNELS else b.out
        _check_block(b, c, c_out, f"stem[{i}]")
        c, size = c_out, (size + b.stride - 1) // b.stride
    for s, st in enumerate(d.stages):
        if st.reduction is None and st.out != c:
            raise InvalidSpaceDefinition(
                f"stages[{s}].out",
                f"cells keep their channels: {st.out} != {c} (a reduction changes them)",
            )
        if st.reduction is not None and size % 2:
            raise InvalidSpaceDefinition(
                f"stages[{s}].reduction", f"a resnet reduction needs an even input side, got {size}"
            )
        if st.reduction is not None:
            c, size = st.out, size // 2
    pooled = False
    for i, b in enumerate(d.head):
        if (b.op == "linear") != pooled:
            raise InvalidSpaceDefinition(
                f"head[{i}].op", "the head is convs and norms, a pool, then linears"
            )
        _check_block(b, c, c if b.op in KEEPS_CHANNELS else b.out, f"head[{i}]")
        if b.op not in KEEPS_CHANNELS:
            c = b.out
        pooled = pooled or b.op == "pool"
    if not pooled or d.head[-1].op != "linear":
        raise InvalidSpaceDefinition("head", "needs a {op: pool} and a linear after it")
    return CellSpace(d)
