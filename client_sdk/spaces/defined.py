"""``DefinedSpace``: a search space interpreted from a definition (``spaces.language``).

Genes, in order: ``resolution`` and ``width`` (when they are choices), ``depth{s}`` (per
stage with a depth choice), then one group per choice key (``op``, ``kernel``, ``expand``,
...) with one gene per block position that chooses it (``kernel{p}``, ``p`` counting the
blocks of every stage at its largest depth); ``gene_prefix`` renames a group's genes.
Blocks past a stage's depth are inactive and their genes canonicalised to 0, as are the
choice genes of a block whose candidate is ``skip``.

Descriptors follow ``spaces.layers`` (one layer list per architecture) and are served as
per-(global choice, position, block choice) tables plus a fixed part, so a batch costs one
gather-sum per position, like the bundled spaces.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace, Table, lookup_choice
from client_sdk.spaces.descriptors import BASE_NAMES
from client_sdk.spaces.language import (
    MAX_BLOCKS,
    MAX_GENES,
    Block,
    Definition,
    InvalidSpaceDefinition,
)
from client_sdk.spaces.layers import NUM_BASE, Layer, conv, eltwise, global_pool, linear

MAX_CODES = 4096  # block choices of one position (product of its genes' cardinalities)
MAX_TABLE_ROWS = 2_000_000
SAMPLE_SIZE = 5000  # the sample that stands in for a table (``DefinedSpace.table``)
SAMPLE_SEED = 20261206


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def label(v: object) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def scaled(channels: int, width: float) -> int:
    return channels if width == 1.0 else make_divisible(channels * width)


def mid_channels(block: Block, c_in: int) -> int:
    return c_in if block.expand == 1.0 else make_divisible(c_in * block.expand)


def block_layers(b: Block, c_in: int, c_out: int, stride: int, size: int) -> list[Layer]:
    """The executed layers of one block (``spaces.layers`` rows), in forward order."""
    out = (size + stride - 1) // stride
    same = c_in == c_out and stride == 1
    if b.op == "skip":
        return [] if same else [conv(c_in, c_out, 1, stride, size)]
    if b.op == "conv":
        return [conv(c_in, c_out, b.kernel, stride, size, b.groups)]
    mid = mid_channels(b, c_in)
    layers: list[Layer] = []
    if b.expand != 1.0 or b.expand_conv == "always":
        layers.append(conv(c_in, mid, 1, 1, size, b.groups))
        if b.groups > 1:  # channel shuffle
            layers.append(eltwise(mid, size, reads=1))
    layers.append(conv(mid, mid, b.kernel, stride, size, mid))
    if b.se:
        red = make_divisible(mid // 4)
        layers += [global_pool(mid, out), linear(mid, red), linear(red, mid),
                   eltwise(mid, out)]
    layers.append(conv(mid, c_out, 1, 1, out, b.groups))
    if same:
        layers.append(eltwise(c_out, out))
    return layers


@dataclass(frozen=True)
class Position:
    stage: int
    index: int  # block index within the stage
    genes: tuple[int, ...]  # gene columns this block reads (op first, then factors)
    keys: tuple[str, ...]  # their choice keys


class DefinedSpace(SearchSpace):
    """A search space from a definition; no bundled table (``has_table`` False)."""

    has_table = False

    def __init__(self, definition: Definition) -> None:
        self.definition = d = definition
        self.name = d.name
        self.description = d.description
        prefix = {k: d.gene_prefix.get(k, k) for k in ("resolution", "width", "depth")}
        names: list[str] = []
        choices: list[tuple] = []  # raw values per gene
        self._res_gene = self._width_gene = None
        if len(d.resolutions) > 1:
            self._res_gene = len(names)
            names.append(prefix["resolution"])
            choices.append(d.resolutions)
        if len(d.widths) > 1:
            self._width_gene = len(names)
            names.append(prefix["width"])
            choices.append(d.widths)
        self._depth_genes: dict[int, int] = {}
        for s, st in enumerate(d.stages):
            if len(st.depths) > 1:
                self._depth_genes[s] = len(names)
                names.append(f"{prefix['depth']}{s}")
                choices.append(st.depths)
        slots = [(s, b) for s, st in enumerate(d.stages) for b in range(st.max_depth)]
        per_pos: list[dict[str, int]] = [{} for _ in slots]
        keys = ["op"] + list(dict.fromkeys(k for st in d.stages for k, _ in st.factors))
        for key in keys:
            for p, (s, b) in enumerate(slots):
                st = d.stages[s]
                if key == "op":
                    cands = st.first_ops if b == 0 and st.first_ops else st.ops
                    if cands is None:
                        continue
                    values: tuple = tuple(n for n, _ in cands)
                else:
                    values = dict(st.factors).get(key)
                    if values is None:
                        continue
                per_pos[p][key] = len(names)
                names.append(f"{d.gene_prefix.get(key, key)}{p}")
                choices.append(values)
        self.positions = tuple(
            Position(s, b, tuple(per_pos[p].values()), tuple(per_pos[p]))
            for p, (s, b) in enumerate(slots))
        self.gene_names = tuple(names)
        self._values = tuple(choices)
        self.choices = tuple(tuple(label(v) for v in c) for c in choices)
        self.cardinalities = np.array([len(c) for c in choices], dtype=np.int64)
        self.group_keys = ("resolution", "width", "depth", *keys)

    # --------------------------------------------------------------- blocks
    def block_of(self, p: int, genes: Sequence[int]) -> Block:
        """The resolved block at position ``p`` for a gene vector (stride/out filled in)."""
        pos = self.positions[p]
        st = self.definition.stages[pos.stage]
        fields = dict(st.block)
        for key, j in zip(pos.keys, pos.genes, strict=True):
            value = self._values[j][int(genes[j])]
            if key == "op":
                cands = st.first_ops if pos.index == 0 and st.first_ops else st.ops
                assert cands is not None
                fields.update(dict(cands)[value])
            else:
                fields[key] = value
        stride = st.stride if pos.index == 0 else 1
        return Block(**fields, stride=stride, out=st.out)

    def globals_of(self, genes: Sequence[int]) -> tuple[int, float]:
        d = self.definition
        r = d.resolutions[int(genes[self._res_gene])] if self._res_gene is not None else \
            d.resolutions[0]
        w = d.widths[int(genes[self._width_gene])] if self._width_gene is not None else \
            d.widths[0]
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
            c_out = c if b.op in ("pool", "skip") else scaled(b.out, width)
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
                c_out = c if b.op in ("pool", "skip") else scaled(b.out, width)
            yield "head", b, c, c_out, b.stride, size
            c, size = c_out, (1 if b.op == "pool" else (size + b.stride - 1) // b.stride)

    def layers(self, genes: Sequence[int]) -> list[Layer]:
        """The executed layer list of one (canonical) gene vector."""
        out: list[Layer] = []
        for _, b, c_in, c_out, stride, size in self.walk(genes):
            out += fixed_layers(b, c_in, c_out, stride, size)
        return out

    # -------------------------------------------------------------- strings
    def _groups(self) -> list[tuple[str, list[int]]]:
        groups: list[tuple[str, list[int]]] = []
        if self._res_gene is not None:
            groups.append(("resolution", [self._res_gene]))
        if self._width_gene is not None:
            groups.append(("width", [self._width_gene]))
        if self._depth_genes:
            groups.append(("depth", list(self._depth_genes.values())))
        by_key: dict[str, list[int]] = {}
        for pos in self.positions:
            for key, j in zip(pos.keys, pos.genes, strict=True):
                by_key.setdefault(key, []).append(j)
        groups += sorted(by_key.items(), key=lambda kv: kv[1][0])
        return groups

    @functools.cached_property
    def _string_groups(self) -> list[tuple[str, list[int]]]:
        return self._groups()

    @functools.cached_property
    def _string_keys(self) -> dict[str, str]:
        """Group -> its key in the keyed string form (``format.keys``, else the group)."""
        keys = self.definition.format_keys
        return {g: keys.get(g, g) for g, _ in self._string_groups}

    def format(self, genes: np.ndarray) -> str:
        parts = []
        keys = self._string_keys
        for key, cols in self._string_groups:
            vals = "-".join(self.choices[j][int(genes[j])] for j in cols)
            parts.append(vals if self.definition.format == "joined" else f"{keys[key]}={vals}")
        return " ".join(parts)

    def parse(self, arch: str, index: int = 0) -> np.ndarray:
        if not isinstance(arch, str):
            raise InvalidArchitecture(f"expected a string, got {type(arch).__name__}", index=index)
        groups = self._string_groups
        tokens = arch.split()
        if self.definition.format == "joined":
            given = dict(zip([k for k, _ in groups], tokens, strict=False))
            if len(tokens) != len(groups):
                raise InvalidArchitecture(f"expected {len(groups)} '-'-joined group(s), got "
                                          f"{len(tokens)}", index=index)
        else:
            given = {}
            external = self._string_keys
            internal = {k: g for g, k in external.items()}
            for tok in tokens:
                key, eq, vals = tok.partition("=")
                group = internal.get(key)
                if not eq or group is None or group in given:
                    raise InvalidArchitecture(
                        f"bad token '{tok[:40]}' (expected each of "
                        f"{', '.join(external[k] + '=...' for k, _ in groups)} once)",
                        index=index)
                given[group] = vals
            missing = [external[k] for k, _ in groups if k not in given]
            if missing:
                raise InvalidArchitecture(f"missing {', '.join(m + '=' for m in missing)}",
                                          index=index)
        out = np.zeros(self.num_genes, dtype=GENE_DTYPE)
        for key, cols in groups:
            vals = given[key].split("-")
            if len(vals) != len(cols):
                shown = self._string_keys[key] if self.definition.format == "keyed" else key
                raise InvalidArchitecture(f"'{shown}' needs {len(cols)} value(s) joined by '-', "
                                          f"got {len(vals)}", index=index, gene=cols[0])
            for j, v in zip(cols, vals, strict=True):
                out[j] = lookup_choice(v, self.choices[j], index, j, self.gene_names[j])
        return self.canonicalize(out[None, :])[0]

    # ---------------------------------------------------------- canonical form
    @functools.cached_property
    def _canon(self) -> list[tuple[int | None, int, list[int], int | None, np.ndarray | None]]:
        """Per position: (depth gene, block index, its genes, op gene, op-is-skip mask)."""
        rules = []
        for p, pos in enumerate(self.positions):
            st = self.definition.stages[pos.stage]
            op_gene = pos.genes[0] if pos.keys[:1] == ("op",) else None
            skip = None
            if op_gene is not None:
                cands = st.first_ops if pos.index == 0 and st.first_ops else st.ops
                assert cands is not None
                skip = np.array([c.get("op", st.block.get("op", "mbconv")) == "skip"
                                 for _, c in cands])
            rules.append((self._depth_genes.get(pos.stage), pos.index, list(pos.genes),
                          op_gene, skip))
            del p
        return rules

    def canonicalize(self, genes: np.ndarray) -> np.ndarray:
        """Genes of inactive blocks, and the other genes of a block whose op is ``skip``, set
        to 0: one keep-mask built column by column, then one multiply."""
        g = np.asarray(genes)
        keep: np.ndarray | None = None
        depths: dict[int, np.ndarray] = {}  # depth gene -> the depth of each row
        for dgene, b, cols, op_gene, skip in self._canon:
            if not cols:
                continue
            drop = []
            if dgene is not None:
                if dgene not in depths:
                    depths[dgene] = np.asarray(self._values[dgene]).take(g[:, dgene])
                drop.append((cols, depths[dgene] > b))
            if op_gene is not None and skip is not None and skip.any() and len(cols) > 1:
                drop.append((cols[1:], ~skip.take(g[:, op_gene])))
            for which, active in drop:
                if keep is None:
                    keep = np.ones(g.shape, dtype=bool)
                for c in which:
                    keep[:, c] &= active
        return g.copy() if keep is None else g * keep

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
        per position from contiguous gene columns (no (n, positions, D) intermediate);
        inactive blocks gather the all-zero last row."""
        _, _, offsets, radix = self._tables
        cols = np.ascontiguousarray(np.asarray(genes).T)  # (genes, n), the genes' int dtype
        if cols.dtype.kind not in "iu":
            cols = cols.astype(np.int64)
        n = cols.shape[1]
        per_combo = int(offsets[-1])
        zero = flat.shape[0] - 1
        base = None  # per-row offset of the global (resolution, width) combination
        if self._res_gene is not None or self._width_gene is not None:
            base = self._global_code_cols(cols) * per_combo
            out = fixed.take(base // per_combo, axis=0)
        else:
            out = np.empty((n, flat.shape[1]))
            out[:] = fixed[0]
        active: dict[int, np.ndarray] = {}  # stage -> its depth per row
        for s, j in self._depth_genes.items():
            active[s] = np.asarray(self._values[j], dtype=np.int64).take(cols[j])
        for p, pos in enumerate(self.positions):
            lo = int(offsets[p])
            if not pos.genes:
                code = np.zeros(n, dtype=np.int64)
            elif len(pos.genes) == 1:
                code = cols[pos.genes[0]]
            else:
                code = cols[pos.genes[0]].astype(np.int64) * radix[p][0]
                for j, r in zip(pos.genes[1:], radix[p][1:], strict=True):
                    code += np.multiply(cols[j], r, dtype=np.int64) if r != 1 else cols[j]
            depth = active.get(pos.stage)
            if base is None and depth is None:
                out += flat[lo:int(offsets[p + 1])].take(code, axis=0)
                continue
            idx = np.add(code, lo, dtype=np.int64) if base is None else base + lo + code
            if depth is not None:
                idx = np.where(depth > pos.index, idx, zero)
            out += flat.take(idx, axis=0)
        return out

    def _global_code(self, g: np.ndarray) -> np.ndarray:
        """(n,) index of each row's global (resolution, width) combination; ``g`` (n, genes)."""
        return self._global_code_cols(np.asarray(g).T)

    def _global_code_cols(self, cols: np.ndarray) -> np.ndarray:
        """``_global_code`` from gene *columns* (genes, n)."""
        code = np.zeros(cols.shape[1], dtype=np.int64)
        if self._res_gene is not None:
            code += cols[self._res_gene] * len(self.definition.widths)
        if self._width_gene is not None:
            code += cols[self._width_gene]
        return code

    def flops(self, genes: np.ndarray) -> np.ndarray:
        return self._gather(*self._cost_tables, genes)[:, 0]

    def params(self, genes: np.ndarray) -> np.ndarray:
        return self._gather(*self._cost_tables, genes)[:, 1]

    # ----------------------------------------------------------------- table
    @property
    def num_architectures(self) -> int:
        return 0  # no measured table

    def _load_table(self) -> Table:
        """No measurements: a fixed sample of the space (``SAMPLE_SIZE`` archs, no devices),
        the candidate pool for references and the rows basis devices are transferred to."""
        genes = np.unique(self.sample(SAMPLE_SIZE, rng=SAMPLE_SEED), axis=0)
        return Table(genes, np.arange(len(genes)), (), np.zeros((len(genes), 0)), {})

    def info(self) -> dict:
        return {**super().info(), "definition": self.definition.source}


def fixed_layers(b: Block, c_in: int, c_out: int, stride: int, size: int) -> list[Layer]:
    """Layers of a stem/head entry or a block."""
    if b.op == "pool":
        return [global_pool(c_in, size)]
    if b.op == "linear":
        return [linear(c_in, c_out, bias=b.bias)]
    return block_layers(b, c_in, c_out, stride, size)


def _rows(layers: list[Layer], stage: int, n_stages: int) -> np.ndarray:
    v = np.zeros(NUM_BASE + n_stages)
    for layer in layers:
        r = layer.row()
        v[:NUM_BASE] += r
        v[NUM_BASE + stage] += r[0] + r[1]
    return v


def build_tables(sp: DefinedSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Every (global choice, position, block choice) row, each checked for channel/group
    consistency (an ``InvalidSpaceDefinition`` names the stage and the choice)."""
    d = sp.definition
    n_st = sp.num_stages
    dim = NUM_BASE + n_st
    radix, sizes = [], []
    for pos in sp.positions:
        cards = [int(sp.cardinalities[j]) for j in pos.genes]
        radix.append([int(np.prod(cards[k + 1:], dtype=np.int64)) for k in range(len(cards))])
        sizes.append(int(np.prod(cards, dtype=np.int64)))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    combos = list(itertools.product(range(len(d.resolutions)), range(len(d.widths))))
    flat = np.zeros((len(combos) * int(offsets[-1]) + 1, dim))
    fixed = np.zeros((len(combos), dim))
    for gc, (ri, wi) in enumerate(combos):
        res, width = d.resolutions[ri], d.widths[wi]
        base = gc * int(offsets[-1])
        c, size = d.channels, res
        for i, b in enumerate(d.stem):
            c_out = c if b.op in ("pool", "skip") else scaled(b.out, width)
            _check_block(b, c, c_out, f"stem[{i}]")
            fixed[gc] += _rows(fixed_layers(b, c, c_out, b.stride, size), 0, n_st)
            c, size = c_out, (size + b.stride - 1) // b.stride
        for p, pos in enumerate(sp.positions):
            st = d.stages[pos.stage]
            c_out = scaled(st.out, width)
            stride = st.stride if pos.index == 0 else 1
            c_in = c if pos.index == 0 else c_out
            side = size if pos.index == 0 else (size + st.stride - 1) // st.stride
            genes = np.zeros(sp.num_genes, dtype=np.int64)
            cards = [int(sp.cardinalities[j]) for j in pos.genes]
            for code, combo in enumerate(itertools.product(*(range(k) for k in cards))):
                genes[list(pos.genes)] = combo
                blk = sp.block_of(p, genes)
                chosen = ", ".join(sp.choices[j][v]
                                   for j, v in zip(pos.genes, combo, strict=True))
                where = f"stages[{pos.stage}] block {pos.index}" + (
                    f" ({chosen})" if chosen else "")
                _check_block(blk, c_in, c_out, where)
                flat[base + offsets[p] + code] = _rows(
                    block_layers(blk, c_in, c_out, stride, side), pos.stage, n_st)
            if pos.index == st.max_depth - 1:
                c, size = c_out, (size + st.stride - 1) // st.stride
        last = len(d.head) - 1
        for i, b in enumerate(d.head):
            if b.op == "linear":
                c_out = b.out if i == last else scaled(b.out, width)
            else:
                c_out = c if b.op in ("pool", "skip") else scaled(b.out, width)
            _check_block(b, c, c_out, f"head[{i}]")
            fixed[gc] += _rows(fixed_layers(b, c, c_out, b.stride, size), n_st - 1, n_st)
            c, size = c_out, (1 if b.op == "pool" else (size + b.stride - 1) // b.stride)
    return flat, fixed, offsets, radix


def _check_block(b: Block, c_in: int, c_out: int, where: str) -> None:
    if b.groups == 1 or b.op not in ("conv", "mbconv"):
        return
    if b.op == "mbconv" and b.expand == 1.0 and b.expand_conv == "auto":
        raise InvalidSpaceDefinition(where, f"groups {b.groups} need an expansion conv "
                                     "(expand > 1 or expand_conv: always)")
    mid = mid_channels(b, c_in) if b.op == "mbconv" else c_out
    for what, ch in (("input", c_in), ("expanded", mid), ("output", c_out)):
        if ch % b.groups:
            raise InvalidSpaceDefinition(where, f"groups {b.groups} do not divide the "
                                         f"{ch} {what} channels")


def check_consistency(d: Definition) -> DefinedSpace:
    """Checks a definition as a whole (sizes, channel/group consistency, head order) and
    returns the space with its descriptor tables built."""
    n_blocks = sum(st.max_depth for st in d.stages)
    if n_blocks > MAX_BLOCKS:
        raise InvalidSpaceDefinition("stages", f"{n_blocks} block positions; at most "
                                     f"{MAX_BLOCKS}")
    for s, st in enumerate(d.stages):
        cards = [len(v) for _, v in st.factors] + ([len(st.ops)] if st.ops else [])
        if int(np.prod(cards, dtype=np.float64)) > MAX_CODES:
            raise InvalidSpaceDefinition(f"stages[{s}].choose", f"{int(np.prod(cards))} "
                                         f"choices per block; at most {MAX_CODES}")
    for i, b in enumerate(d.stem):
        if b.op in ("linear", "pool"):
            raise InvalidSpaceDefinition(f"stem[{i}].op", f"{b.op} belongs in the head")
    pooled = False
    for i, b in enumerate(d.head):
        if b.op == "linear" and not pooled:
            raise InvalidSpaceDefinition(f"head[{i}].op", "linear needs a pooled input "
                                         "(put {op: pool} before it)")
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
                raise InvalidSpaceDefinition(f"{what}.{g}", f"the space has no '{g}' genes "
                                             f"(its gene groups: {', '.join(groups)})")
    if len(set(sp.gene_names)) != len(sp.gene_names):
        dup = next(n for i, n in enumerate(sp.gene_names) if n in sp.gene_names[:i])
        raise InvalidSpaceDefinition("gene_prefix", f"gene name {dup!r} is given twice")
    if sp.num_genes > MAX_GENES:
        raise InvalidSpaceDefinition("stages", f"{sp.num_genes} genes; at most {MAX_GENES}")
    rows = len(d.resolutions) * len(d.widths) * sum(
        int(np.prod([sp.cardinalities[j] for j in p.genes], dtype=np.float64))
        for p in sp.positions)
    if rows > MAX_TABLE_ROWS:
        raise InvalidSpaceDefinition("stages", f"the descriptor tables would have {rows} rows; "
                                     f"at most {MAX_TABLE_ROWS} (fewer choices or globals)")
    sp.__dict__["_tables"] = build_tables(sp)
    return sp


def space_from_definition(data: object) -> SearchSpace:
    """Validate and interpret a definition (mapping or YAML/JSON text), tables built: a
    skeleton with choices (``DefinedSpace``) or a list of given networks (``NetworkSpace``,
    a definition with ``networks``)."""
    from client_sdk.spaces.language import load_text, validate_definition
    from client_sdk.spaces.networks import NetworkSpace, is_networks_definition, parse_networks

    if isinstance(data, str | bytes):
        data = load_text(data)
    if is_networks_definition(data):
        return NetworkSpace(parse_networks(data))  # type: ignore[arg-type]
    return check_consistency(validate_definition(data))  # type: ignore[arg-type]
