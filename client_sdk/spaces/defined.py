"""``DefinedSpace``: a search space interpreted from a definition (``spaces.language``).

Genes, in order: ``resolution`` and ``width`` (when they are choices), ``depth{s}`` (per
stage with a depth choice), then one group per choice key (``op``, ``kernel``, ``expand``,
...) with one gene per block position that chooses it (``kernel{p}``, ``p`` counting the
blocks of every stage at its largest depth); ``gene_prefix`` renames a group's genes.
Blocks past a stage's depth are inactive and their genes canonicalised to 0, as are the
choice genes of a block whose candidate is ``skip``.

Descriptors follow ``spaces.layers`` (one layer list per architecture) and are served as
per-(global choice, position, block choice) tables plus a fixed part, so a batch costs one
gather-sum per position (``spaces.defined_tables``). The string form is
``spaces.defined_strings``, the canonical form and model features ``spaces.defined_canon``,
a bundled space's measured table ``spaces.table_hook`` (FBNet and OFA-MobileNetV3 are
served from their definitions; NAS-Bench-201 from its cell-space definition, a subclass:
``spaces.cells.CellSpace``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from client_sdk.spaces import defined_gather, format_ofa, table_hook
from client_sdk.spaces.base import SearchSpace, Table
from client_sdk.spaces.defined_canon import DefinedCanon
from client_sdk.spaces.defined_strings import DefinedStrings
from client_sdk.spaces.defined_tables import (  # noqa: F401 - re-exported
    KEEPS_CHANNELS,
    block_layers,
    build_tables,
    fixed_layers,
    label,
    make_divisible,
    mid_channels,
    scaled,
)
from client_sdk.spaces.descriptors import BASE_NAMES
from client_sdk.spaces.language import (
    MAX_BLOCKS,
    MAX_GENES,
    ORDINAL_GROUPS,
    Block,
    Definition,
    InvalidSpaceDefinition,
)
from client_sdk.spaces.layers import Layer

MAX_CODES = 4096  # block choices of one position (product of its genes' cardinalities)
MAX_TABLE_ROWS = 2_000_000
SAMPLE_SIZE = 5000  # the sample that stands in for a table (``DefinedSpace.table``)
SAMPLE_SEED = 20261206


@dataclass(frozen=True)
class Position:
    stage: int
    index: int  # block index within the stage
    genes: tuple[int, ...]  # gene columns this block reads (op first, then factors)
    keys: tuple[str, ...]  # their choice keys


class DefinedSpace(DefinedStrings, DefinedCanon, SearchSpace):
    """A search space from a definition: with the bundled table its ``table`` names
    (``has_table``; ``spaces.table_hook``), else a fixed sample of the space."""

    def __init__(self, definition: Definition) -> None:
        self.definition = d = definition
        self.name = d.name
        self.description = d.description
        self.has_table = d.table is not None
        prefix = {k: d.gene_prefix.get(k, k) for k in ("resolution", "width", "depth")}
        names: list[str] = []
        numbers: list[int | None] = []  # the number in each gene's name (stage, position)
        choices: list[tuple] = []  # raw values per gene
        self._res_gene = self._width_gene = None
        if len(d.resolutions) > 1:
            self._res_gene = len(names)
            names.append(prefix["resolution"])
            numbers.append(None)
            choices.append(d.resolutions)
        if len(d.widths) > 1:
            self._width_gene = len(names)
            names.append(prefix["width"])
            numbers.append(None)
            choices.append(d.widths)
        self._depth_genes: dict[int, int] = {}
        for s, st in enumerate(d.stages):
            if len(st.depths) > 1:
                self._depth_genes[s] = len(names)
                names.append(f"{prefix['depth']}{s}")
                numbers.append(s)
                choices.append(st.depths)
        slots = [(s, b) for s, st in enumerate(d.stages) for b in range(st.max_depth)]
        per_pos: list[dict[str, int]] = [{} for _ in slots]
        keys = ["op"] + list(dict.fromkeys(k for st in d.stages for k, _ in st.factors))
        for key in keys:
            for p, (s, b) in enumerate(slots):
                st = d.stages[s]
                if key == "op":
                    cands = st.candidates(b)
                    if cands is None:
                        continue
                    values: tuple = tuple(n for n, _ in cands)
                else:
                    values = dict(st.factors).get(key)
                    if values is None:
                        continue
                per_pos[p][key] = len(names)
                names.append(f"{d.gene_prefix.get(key, key)}{p}")
                numbers.append(p)
                choices.append(values)
        self.positions = tuple(
            Position(s, b, tuple(per_pos[p].values()), tuple(per_pos[p]))
            for p, (s, b) in enumerate(slots)
        )
        self.gene_names = tuple(names)
        self.gene_numbers = tuple(numbers)
        self._values = tuple(choices)
        self.choices = tuple(tuple(label(v) for v in c) for c in choices)
        self.cardinalities = np.array([len(c) for c in choices], dtype=np.int64)
        self.group_keys = ("resolution", "width", "depth", *keys)

    @functools.cached_property
    def ordinal_genes(self) -> np.ndarray:  # type: ignore[override]
        """(g,) bool: the genes of the numeric groups (``language.ORDINAL_GROUPS``:
        resolution, width, depth, kernel, expand, groups), ordered lists of numbers; ops,
        activations and ``se`` are categorical."""
        out = np.zeros(self.num_genes, dtype=bool)
        for group, cols in self._groups():
            out[cols] = group in ORDINAL_GROUPS
        return out

    # --------------------------------------------------------------- blocks
    def block_of(self, p: int, genes: Sequence[int]) -> Block:
        """The resolved block at position ``p`` for a gene vector (stride/out filled in)."""
        pos = self.positions[p]
        st = self.definition.stages[pos.stage]
        fields = dict(st.block)
        for key, j in zip(pos.keys, pos.genes, strict=True):
            value = self._values[j][int(genes[j])]
            if key == "op":
                cands = st.candidates(pos.index)
                assert cands is not None
                fields.update(dict(cands)[value])
            else:
                fields[key] = value
        stride = st.stride if pos.index == 0 else 1
        return Block(**fields, stride=stride, out=st.out)

    def globals_of(self, genes: Sequence[int]) -> tuple[int, float]:
        d = self.definition
        r = (
            d.resolutions[int(genes[self._res_gene])]
            if self._res_gene is not None
            else d.resolutions[0]
        )
        w = d.widths[int(genes[self._width_gene])] if self._width_gene is not None else d.widths[0]
        return r, w

    def depth_of(self, s: int, genes: Sequence[int]) -> int:
        st = self.definition.stages[s]
        j = self._depth_genes.get(s)
        return st.depths[int(genes[j])] if j is not None else st.depths[0]

    def walk(self, genes: Sequence[int]) -> Iterator[tuple[str, Block, int, int, int, int]]:
        """(part, block, c_in, c_out, stride, input side) of every layer group of an arch,
        in forward order; ``part`` is ``stem``, ``stage{s}`` or ``head``."""
        d = self.definition
        res, width = self.globals_of(genes)
        c, size = d.channels, res
        for b in d.stem:
            c_out = c if b.op in KEEPS_CHANNELS else scaled(b.out, width)
            yield "stem", b, c, c_out, b.stride, size
            c, size = c_out, (1 if b.op == "pool" else (size + b.stride - 1) // b.stride)
        p = 0
        for s, st in enumerate(d.stages):
            depth = self.depth_of(s, genes)
            for i in range(st.max_depth):
                if i < depth:
                    blk = self.block_of(p, genes)
                    c_out = scaled(st.out, width)
                    yield f"stage{s}", blk, c, c_out, blk.stride, size
                    c, size = c_out, (size + blk.stride - 1) // blk.stride
                p += 1
        last = len(d.head) - 1
        for i, b in enumerate(d.head):
            if b.op == "linear":
                c_out = b.out if i == last else scaled(b.out, width)
            else:
                c_out = c if b.op in KEEPS_CHANNELS else scaled(b.out, width)
            yield "head", b, c, c_out, b.stride, size
            c, size = c_out, (1 if b.op == "pool" else (size + b.stride - 1) // b.stride)

    def layers(self, genes: Sequence[int]) -> list[Layer]:
        """The executed layer list of one (canonical) gene vector."""
        out: list[Layer] = []
        for _, b, c_in, c_out, stride, size in self.walk(genes):
            out += fixed_layers(b, c_in, c_out, stride, size)
        return out

    # ------------------------------------------------------------ descriptors
    @functools.cached_property
    def num_stages(self) -> int:
        return len(self.definition.stages)

    def descriptor_names(self) -> tuple[str, ...]:
        return BASE_NAMES + tuple(f"macs_stage{i}" for i in range(self.num_stages))

    @functools.cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(flat rows + zero row (R, D), fixed per global combo (G, D), position offsets
        (P,), per-position gene radix list) — see ``descriptors``."""
        return build_tables(self)

    def descriptors(self, genes: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
        flat, fixed, _, _ = self._tables
        if matrix is not None:
            flat, fixed = flat @ matrix, fixed @ matrix
        return self._gather(flat, fixed, genes)

    @functools.cached_property
    def _cost_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The tables folded to (MACs, params) columns, for ``flops`` / ``params``."""
        flat, fixed, _, _ = self._tables
        m = np.zeros((flat.shape[1], 2))
        m[0, 0] = m[1, 0] = m[2, 1] = 1.0
        return flat @ m, fixed @ m

    def _gather(self, flat: np.ndarray, fixed: np.ndarray, genes: np.ndarray) -> np.ndarray:
        """``fixed[global] + sum_p flat[row of position p]`` for a batch: one (n, D) gather
        per position, inactive blocks gather the all-zero last row (``defined_gather``)."""
        return defined_gather.gather(self, flat, fixed, genes)

    @functools.cached_property
    def _min_depth(self) -> dict[int, int]:
        """Stage -> its smallest depth choice (blocks below it always run)."""
        return {s: min(self._values[j]) for s, j in self._depth_genes.items()}

    def _global_code_cols(self, cols: np.ndarray) -> np.ndarray:
        """(n,) index of each row's global (resolution, width) combination, from gene
        *columns* (genes, n)."""
        code = np.zeros(cols.shape[1], dtype=np.int64)
        if self._res_gene is not None:
            code += cols[self._res_gene] * len(self.definition.widths)
        if self._width_gene is not None:
            code += cols[self._width_gene]
        return code

    @functools.cached_property
    def single_gene_positions(self) -> tuple[np.ndarray, int] | None:
        """(gene of each block position (P,), their one cardinality) when every position
        reads exactly one gene, all of one cardinality, with no global or depth choice (FBNet):
        then ``_cost_tables``' rows are ``position * cardinality + gene value``; else None."""
        if self._res_gene is not None or self._width_gene is not None or self._depth_genes:
            return None
        if not self.positions or any(len(p.genes) != 1 for p in self.positions):
            return None
        cards = {int(self.cardinalities[p.genes[0]]) for p in self.positions}
        if len(cards) != 1:
            return None
        return np.array([p.genes[0] for p in self.positions], dtype=np.int64), cards.pop()

    @functools.cached_property
    def staged_positions(self) -> tuple | None:
        """OFA's layout: a resolution gene (no width gene), a depth gene per stage (all with
        the same values), every block position reading two genes (no op) of one pair of
        cardinalities (a, b). Then ``_cost_tables``' row of position p is
        ``((resolution * P + p) * a + gene1) * b + gene2``. Returns (first genes (P,),
        second genes (P,), a, b, block index in its stage (P,), depth gene (P,), depth
        values), else None."""
        d = self.definition
        if self._res_gene is None or self._width_gene is not None or not self.positions:
            return None
        if len(self._depth_genes) != len(d.stages) or len({st.depths for st in d.stages}) != 1:
            return None
        if any(len(p.genes) != 2 or "op" in p.keys for p in self.positions):
            return None
        pairs = {
            (int(self.cardinalities[p.genes[0]]), int(self.cardinalities[p.genes[1]]))
            for p in self.positions
        }
        if len(pairs) != 1:
            return None
        (a, b), pos = pairs.pop(), self.positions
        i64 = functools.partial(np.array, dtype=np.int64)
        return (
            i64([p.genes[0] for p in pos]),
            i64([p.genes[1] for p in pos]),
            a,
            b,
            i64([p.index for p in pos]),
            i64([self._depth_genes[p.stage] for p in pos]),
            i64(d.stages[0].depths),
        )

    def flops(self, genes: np.ndarray) -> np.ndarray:
        return self._gather(*self._cost_tables, genes)[:, 0]

    def params(self, genes: np.ndarray) -> np.ndarray:
        return self._gather(*self._cost_tables, genes)[:, 1]

    # ----------------------------------------------------------------- table
    @property
    def num_architectures(self) -> int:
        return super().num_architectures if self.has_table else 0  # 0: no measured table

    def _load_table(self) -> Table:
        """The bundled table the definition names (``table_hook``); without one, no
        measurements: a fixed sample of the space (``SAMPLE_SIZE`` archs, no devices), the
        candidate pool for references and the rows basis devices are transferred to."""
        if self.has_table:
            return table_hook.load(self)
        genes = np.unique(self.sample(SAMPLE_SIZE, rng=SAMPLE_SEED), axis=0)
        return Table(genes, np.arange(len(genes)), (), np.zeros((len(genes), 0)), {})

    def info(self) -> dict:
        return {**super().info(), "definition": self.definition.source}


def check_consistency(d: Definition) -> DefinedSpace:
    """Checks a definition as a whole (sizes, channel/group consistency, head order; a cell
    space's own checks: ``spaces.cells.check_cells``), then what every space shares (its
    ``table`` columns, native forms, gene and table sizes), and returns the space with its
    descriptor tables built."""
    if d.cell is not None:
        from client_sdk.spaces.cells import check_cells

        sp: DefinedSpace = check_cells(d)
    else:
        sp = _check_blocks(d)
    table_hook.check(sp)
    if "ofa_subnet" in d.native:
        format_ofa.check(sp)
    if sp.num_genes > MAX_GENES:
        raise InvalidSpaceDefinition("stages", f"{sp.num_genes} genes; at most {MAX_GENES}")
    rows = (
        len(d.resolutions)
        * len(d.widths)
        * sum(
            int(np.prod([sp.cardinalities[j] for j in p.genes], dtype=np.float64))
            for p in sp.positions
        )
    )
    if rows > MAX_TABLE_ROWS:
        raise InvalidSpaceDefinition(
            "stages",
            f"the descriptor tables would have {rows} rows; "
            f"at most {MAX_TABLE_ROWS} (fewer choices or globals)",
        )
    sp.__dict__["_tables"] = build_tables(sp)
    return sp


def _check_blocks(d: Definition) -> DefinedSpace:
    """The checks of a skeleton definition (blocks, not a cell): its space, no tables."""
    n_blocks = sum(st.max_depth for st in d.stages)
    if n_blocks > MAX_BLOCKS:
        raise InvalidSpaceDefinition("stages", f"{n_blocks} block positions; at most {MAX_BLOCKS}")
    for s, st in enumerate(d.stages):
        cards = [len(v) for _, v in st.factors] + ([len(st.ops)] if st.ops else [])
        if int(np.prod(cards, dtype=np.float64)) > MAX_CODES:
            raise InvalidSpaceDefinition(
                f"stages[{s}].choose",
                f"{int(np.prod(cards))} choices per block; at most {MAX_CODES}",
            )
    for i, b in enumerate(d.stem):
        if b.op in ("linear", "pool"):
            raise InvalidSpaceDefinition(f"stem[{i}].op", f"{b.op} belongs in the head")
    pooled = False
    for i, b in enumerate(d.head):
        if b.op == "linear" and not pooled:
            raise InvalidSpaceDefinition(
                f"head[{i}].op", "linear needs a pooled input (put {op: pool} before it)"
            )
        if b.op == "norm" and pooled:
            raise InvalidSpaceDefinition(
                f"head[{i}].op", "a norm after pooling: put it before the {op: pool}"
            )
        if b.op in ("conv", "mbconv") and pooled and b.kernel > 1:
            raise InvalidSpaceDefinition(f"head[{i}].kernel", "a conv after pooling must be 1x1")
        pooled = pooled or b.op == "pool"
    if not pooled:
        raise InvalidSpaceDefinition("head", "needs a {op: pool} (global pooling)")
    sp = DefinedSpace(d)
    if sp.num_genes == 0:
        raise InvalidSpaceDefinition("stages", "the space has no choice at all")
    groups = [g for g, _ in sp._groups()]
    for what, mapping in (("format.keys", d.format_keys), ("gene_prefix", d.gene_prefix)):
        for g in mapping:
            if g not in groups:
                raise InvalidSpaceDefinition(
                    f"{what}.{g}",
                    f"the space has no '{g}' genes (its gene groups: {', '.join(groups)})",
                )
    if len(set(sp.gene_names)) != len(sp.gene_names):
        dup = next(n for i, n in enumerate(sp.gene_names) if n in sp.gene_names[:i])
        raise InvalidSpaceDefinition("gene_prefix", f"gene name {dup!r} is given twice")
    return sp


def space_from_definition(data: object) -> SearchSpace:
    """Validate and interpret a definition (mapping or YAML/JSON text, or a ``Definition``
    already validated field by field), tables built: a skeleton with choices
    (``DefinedSpace``) or a list of given networks (``NetworkSpace``, a definition with
    ``networks``)."""
    from client_sdk.spaces.language import load_text, validate_definition
    from client_sdk.spaces.networks import NetworkSpace, is_networks_definition, parse_networks

    if isinstance(data, Definition):
        definition = data
    else:
        if isinstance(data, str | bytes):
            data = load_text(data)
        if is_networks_definition(data):
            return NetworkSpace(parse_networks(data))  # type: ignore[arg-type]
        definition = validate_definition(data)  # type: ignore[arg-type]
    space = check_consistency(definition)
    table_hook.check_allowed(definition)  # last: a definition's own errors come first
    return space
