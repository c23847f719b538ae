"""Building the tree tables (``tree_tables.TreeTables``) from the proxy's LightGBM boosters'
own tree dumps, and checking them against ``Booster.predict`` (``verify``)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from oracle_server.predictor.tree_features import Unsupported, inactive_mask

if TYPE_CHECKING:
    from oracle_server.predictor.tree_tables import TreeTables

log = logging.getLogger(__name__)

VERIFY_RTOL = 1e-9
_ZERO = 1e-35  # LightGBM's kZeroThreshold


def _walk(node: dict, out: list) -> None:
    if "leaf_value" in node:
        return
    out.append(node)
    _walk(node["left_child"], out)
    _walk(node["right_child"], out)


def build_tables(space, boosters: list, log_linear_weights: np.ndarray) -> TreeTables:
    """Tabulate ``boosters`` (one per basis device) + the log-linear part exactly."""
    from oracle_server.predictor.tree_tables import TreeTables

    start = time.perf_counter()
    g = space.num_genes
    cards = space.cardinalities.astype(np.int64)
    n_oh = int(cards.sum())
    gene_of = np.repeat(np.arange(g), cards)
    offsets_oh = space._one_hot_offsets
    inactive_possible = inactive_mask(space, space.table.genes[:1]) is not None
    var_cards = [int(c) for c in cards + (1 if inactive_possible else 0)]
    dumps = []
    for b in boosters:
        trees = []
        for t in b.dump_model()["tree_info"]:
            nodes: list = []
            _walk(t["tree_structure"], nodes)
            trees.append((t["tree_structure"], nodes))
        dumps.append(trees)
    w = np.asarray(log_linear_weights, dtype=np.float64)
    n_extra = w.shape[0] - 1 - n_oh
    thr_sets: list[set[float]] = [set() for _ in range(n_extra)]
    for trees in dumps:
        for _, nodes in trees:
            for nd in nodes:
                if nd["decision_type"] != "<=":
                    raise Unsupported(f"decision type {nd['decision_type']}")
                f = int(nd["split_feature"])
                if f >= n_oh:
                    if nd["missing_type"] == "Zero":
                        raise Unsupported("zero-as-missing split on a non-one-hot feature")
                    thr_sets[f - n_oh].add(float(nd["threshold"]))
    thresholds = [np.array(sorted(s), dtype=np.float64) for s in thr_sets]
    var_cards += [len(t) + 1 for t in thresholds] + [1]
    const = len(var_cards) - 1

    def variable_of(f: int) -> int:
        return int(gene_of[f]) if f < n_oh else g + (f - n_oh)

    def global_pos(nd: dict) -> int:  # index of an extra split's threshold among all
        f = int(nd["split_feature"])
        return int(np.searchsorted(thresholds[f - n_oh], float(nd["threshold"])))

    def go_left(nd: dict, vals: np.ndarray, local: dict[int, np.ndarray]) -> np.ndarray:
        f, thr = int(nd["split_feature"]), float(nd["threshold"])
        if f >= n_oh:  # local bin b: x above exactly b of the group's thresholds
            v = g + f - n_oh
            return vals[v] <= int(np.searchsorted(local[v], global_pos(nd)))
        j = gene_of[f]
        x = (vals[j] == f - offsets_oh[j]).astype(np.float64)
        left = x <= thr
        if nd["missing_type"] == "Zero":
            left = np.where(np.abs(x) <= _ZERO, bool(nd["default_left"]), left)
        return left

    def evaluate(nd: dict, vals: np.ndarray, local: dict[int, np.ndarray]) -> np.ndarray:
        if "leaf_value" in nd:
            return np.full(vals.shape[1], float(nd["leaf_value"]))
        return np.where(
            go_left(nd, vals, local),
            evaluate(nd["left_child"], vals, local),
            evaluate(nd["right_child"], vals, local),
        )

    all_groups, all_luts, all_lut, all_offsets, all_tables = [], [], [], [], []
    for k, trees in enumerate(dumps):
        sets = [
            frozenset(variable_of(int(nd["split_feature"])) for nd in nodes) for _, nodes in trees
        ]
        if max((len(s) for s in sets), default=0) > 3:
            raise Unsupported("a tree reads more than 3 variables")
        kept: list[frozenset] = []
        for s in sorted(
            {*sets, *(frozenset([j]) for j in range(g))}, key=lambda s: (-len(s), sorted(s))
        ):
            if s and not any(s < q for q in kept):
                kept.append(s)
        if not kept:
            kept = [frozenset([0])]
        index = {s: i for i, s in enumerate(kept)}

        def home(s: frozenset, kept=kept, index=index) -> int:
            if s not in index:
                index[s] = min(
                    (i for i, q in enumerate(kept) if s <= q),
                    key=lambda i: int(np.prod([var_cards[v] for v in kept[i]])),
                )
            return index[s]

        homes = [home(s) if s else 0 for s in sets]
        # each group's own thresholds (global positions) per extra variable
        local: list[dict[int, set[int]]] = [{v: set() for v in q if v >= g} for q in kept]
        for i, (_, nodes) in zip(homes, trees, strict=True):
            for nd in nodes:
                if int(nd["split_feature"]) >= n_oh:
                    local[i][variable_of(int(nd["split_feature"]))].add(global_pos(nd))
        local_arr = [{v: np.array(sorted(p), dtype=np.int64) for v, p in d.items()} for d in local]
        lut: list[int] = [0]  # entry 0: the constant variable's zero
        groups = np.full((len(kept), 3), const, dtype=np.int64)
        luts = np.zeros((len(kept), 3), dtype=np.int64)
        grids, sizes = [], []
        for i, q in enumerate(kept):
            vs = sorted(q)
            groups[i, : len(vs)] = vs
            c = [var_cards[v] if v < g else len(local_arr[i][v]) + 1 for v in vs]
            for p, v in enumerate(vs):
                stride = int(np.prod(c[p + 1 :]))
                luts[i, p] = len(lut)
                if v < g:
                    lut.extend(int(x) * stride for x in range(var_cards[v]))
                else:  # global bin -> the group's bin
                    gb = np.arange(var_cards[v])
                    lut.extend(
                        int(x) * stride for x in np.searchsorted(local_arr[i][v], gb, side="left")
                    )
            vals = np.zeros((len(var_cards), int(np.prod(c))), dtype=np.int64)
            vals[vs] = np.indices(c).reshape(len(vs), -1)
            grids.append(vals)
            sizes.append(vals.shape[1])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        table = np.zeros(int(np.sum(sizes)))
        for j in range(g):  # one-hot linear weights of gene j
            i = home(frozenset([j]))
            v = grids[i][j]
            table[offsets[i] : offsets[i] + sizes[i]] += np.where(
                v < cards[j], w[offsets_oh[j] + np.minimum(v, cards[j] - 1), k], 0.0
            )
        for s, i, (tree, _) in zip(sets, homes, trees, strict=True):
            if not s:  # a single leaf: a constant, added once per architecture
                table[offsets[0] : offsets[0] + sizes[0]] += float(tree["leaf_value"])
                continue
            table[offsets[i] : offsets[i] + sizes[i]] += evaluate(tree, grids[i], local_arr[i])
        all_groups.append(groups)
        all_luts.append(luts)
        all_lut.append(np.array(lut, dtype=np.int64))
        all_offsets.append(offsets)
        all_tables.append(table)
    out = TreeTables(
        space,
        thresholds,
        all_groups,
        all_luts,
        all_lut,
        all_offsets,
        all_tables,
        w[n_oh:-1],
        w[-1].copy(),
    )
    log.info(
        "tabulated %s proxy: %d groups per device, %.1f MB, %.1f s",
        space.name,
        int(np.mean([len(q) for q in all_groups])),
        out.nbytes / 2**20,
        time.perf_counter() - start,
    )
    return out


def verify(tables: TreeTables, reference, space, n_random: int = 2000, seed: int = 0) -> float:
    """Max relative latency difference between the tables and ``reference(features)`` (the
    proxy's ``predict``) on random and table architectures."""
    genes = np.concatenate([space.sample(n_random, seed), space.table.genes[:n_random]])
    ref = reference(space.features(genes))
    got = np.exp(tables.log_basis(genes))
    return float(np.max(np.abs(got - ref) / np.abs(ref)))
