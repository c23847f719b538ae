"""The variables of the tree-table form of the LightGBM proxy (``tree_tables``): each
architecture's effective genes (a one-hot zeroed by the space counts as one extra value) and
its non-one-hot features (log FLOPs, log params, resolution), computed bit for bit as the
spaces' own ``features``; ``check_features`` proves it for a space at build time."""

from __future__ import annotations

import numpy as np


class Unsupported(ValueError):
    """The proxy uses something the table form cannot reproduce exactly."""


# ----------------------------------------------------------------- variables
def inactive_mask(space, genes: np.ndarray) -> np.ndarray | None:
    """(n, g) bool: genes whose one-hot the space's features zero (None: none can be; a
    space from a definition with ``features: {inactive: zero}``, as OFA's, zeroes the genes
    of blocks past their stage's depth)."""
    zeroed = getattr(space, "zeroed_genes", None)
    return None if zeroed is None else zeroed(genes)


def position_costs(space) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, float, float] | None:
    """A space from a definition whose every block position reads one gene of one
    cardinality, no global or depth choice (FBNet; ``DefinedSpace.single_gene_positions``):
    (gene of each position (P,), cardinality, MACs (P, card), params (P, card), fixed MACs,
    fixed params); None for any other space."""
    layout = getattr(space, "single_gene_positions", None)
    if layout is None:
        return None
    pos_gene, card = layout
    flat, fixed = space._cost_tables  # rows position * card + value, then a zero row
    rows = flat[: len(pos_gene) * card]
    return (
        pos_gene,
        card,
        rows[:, 0].reshape(-1, card),
        rows[:, 1].reshape(-1, card),
        float(fixed[0, 0]),
        float(fixed[0, 1]),
    )


def staged_costs(space) -> tuple | None:
    """A space from a definition laid out as OFA-MobileNetV3 (``DefinedSpace.
    staged_positions``) whose features zero inactive blocks and add the input area: (the
    layout, MACs (R * P * a * b,), params, fixed MACs (R,), fixed params (R,), the area per
    resolution (R,) float32); None for any other space."""
    layout = getattr(space, "staged_positions", None)
    if layout is None or getattr(space, "resolution_area", None) is None:
        return None
    res_gene = space._res_gene
    probe = np.zeros((len(space.definition.resolutions), space.num_genes), dtype=np.int64)
    probe[:, res_gene] = np.arange(len(probe))
    area = space.resolution_area(probe)
    if area is None or space.zeroed_genes(probe) is None:
        return None
    flat, fixed = space._cost_tables  # rows ((res * P + p) * a + g1) * b + g2, a zero row
    rows = flat[:-1]
    return (
        layout,
        rows[:, 0],
        rows[:, 1],
        np.ascontiguousarray(fixed[:, 0]),
        np.ascontiguousarray(fixed[:, 1]),
        area,
    )


def flops_params(space, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``space.flops(genes), space.params(genes)``, bit for bit, in one gather-sum of both
    columns of a definition's cost tables (``DefinedSpace._cost_tables``); any other space
    computes them itself."""
    if hasattr(space, "_cost_tables"):
        both = space._gather(*space._cost_tables, genes)
        return both[:, 0], both[:, 1]
    return space.flops(genes), space.params(genes)


def extra_features(space, genes: np.ndarray) -> np.ndarray:
    """(n, C) float32: the non-one-hot features, as ``space.features`` computes them."""
    flops, params = flops_params(space, genes)
    n = len(genes)
    area_of = getattr(space, "resolution_area", None)  # a space from a definition
    area = area_of(genes) if area_of is not None else None
    if area is not None:  # OFA's (resolution / 224) ** 2
        out = np.empty((n, 3), dtype=np.float32)
        out[:, 0] = area
    else:
        out = np.empty((n, 2), dtype=np.float32)
    out[:, -2] = np.log1p(flops)
    out[:, -1] = np.log1p(params)
    return out


def effective_genes(space, genes: np.ndarray) -> np.ndarray:
    """(n, g) int32 gene values, ``cardinality`` where the gene's one-hot is zeroed."""
    eff = genes.astype(np.int32)
    mask = inactive_mask(space, genes)
    if mask is not None:
        eff = np.where(mask, space.cardinalities[None, :].astype(np.int32), eff)
    return eff


def check_features(space, genes: np.ndarray) -> None:
    """Raise ``Unsupported`` unless (effective genes, extra features) rebuild
    ``space.features`` bit for bit."""
    feats = space.features(genes)
    n_oh = int(space.cardinalities.sum())
    eff = effective_genes(space, genes)
    onehot = np.zeros((len(genes), n_oh + 1), dtype=np.float32)
    offsets = space._one_hot_offsets
    cols = np.where(eff < space.cardinalities[None, :], eff + offsets[None, :], n_oh)
    onehot[np.arange(len(genes))[:, None], cols] = 1.0
    rebuilt = np.concatenate([onehot[:, :n_oh], extra_features(space, genes)], axis=1)
    if rebuilt.shape != feats.shape or not np.array_equal(rebuilt, feats):
        raise Unsupported(f"features of space '{space.name}' are not one-hot + extra features")
