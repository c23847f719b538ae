"""Canonical form, block activity and model features of a ``DefinedSpace`` (a mixin).

Blocks past their stage's depth are inactive and their genes canonicalised to 0, as are
the other genes of a block whose op is ``skip``; ``active_mask`` says which blocks run.
Model features are the one-hot genes, log FLOPs and log params of every space; a
definition's ``features`` may zero the one-hot of the genes canonicalisation zeroes and add
the relative input area (OFA-MobileNetV3's features, ``spaces.language``).
"""

from __future__ import annotations

import functools

import numpy as np


class DefinedCanon:
    """Mixin of ``DefinedSpace``: ``canonicalize``, ``active_mask``, ``features``."""

    # ---------------------------------------------------------- canonical form
    @functools.cached_property
    def _canon(self) -> list[tuple[int | None, int, list[int], int | None, np.ndarray | None]]:
        """Per position: (depth gene, block index, its genes, op gene, op-is-skip mask)."""
        rules = []
        for pos in self.positions:
            st = self.definition.stages[pos.stage]
            op_gene = pos.genes[0] if pos.keys[:1] == ("op",) else None
            skip = None
            if op_gene is not None:
                cands = st.candidates(pos.index)
                assert cands is not None
                skip = np.array([c.get("op", st.block.get("op", "mbconv")) == "skip"
                                 for _, c in cands])
            rules.append((self._depth_genes.get(pos.stage), pos.index, list(pos.genes),
                          op_gene, skip))
        return rules

    @functools.cached_property
    def _canon_noop(self) -> bool:
        """No gene can ever be canonicalised (no depth choice, no skip beside other genes
        of its block): ``canonicalize`` is the identity, as for FBNet."""
        return all(dgene is None and (op_gene is None or skip is None or not skip.any()
                                      or len(cols) <= 1)
                   for dgene, _, cols, op_gene, skip in self._canon)

    def canonicalize(self, genes: np.ndarray) -> np.ndarray:
        """Genes of inactive blocks, and the other genes of a block whose op is ``skip``, set
        to 0: one keep-mask built column by column, then one multiply."""
        if self._canon_noop:
            return genes
        g = np.asarray(genes)
        keep = self._keep_mask(g)
        return g.copy() if keep is None else g * keep

    @functools.cached_property
    def _depth_rules(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Per depth gene: (the gene, the gene columns of its stage's blocks, a (depth choice,
        column) bool table: whether that column's block is active at that depth)."""
        by: dict[int, tuple[list[int], list[int]]] = {}
        for dgene, b, cols, _, _ in self._canon:
            if dgene is not None and cols:
                where, index = by.setdefault(dgene, ([], []))
                where += cols
                index += [b] * len(cols)
        return [(dgene, np.asarray(where, dtype=np.intp),
                 np.asarray(self._values[dgene])[:, None] > np.asarray(index)[None, :])
                for dgene, (where, index) in by.items()]

    @functools.cached_property
    def _skip_rules(self) -> list[tuple[int, list[int], np.ndarray]]:
        """Per position whose op may be ``skip`` beside other genes: (op gene, the other
        genes, per op choice: whether they are kept)."""
        return [(op_gene, cols[1:], ~skip) for _, _, cols, op_gene, skip in self._canon
                if op_gene is not None and skip is not None and skip.any() and len(cols) > 1]

    def _keep_mask(self, g: np.ndarray) -> np.ndarray | None:
        """(n, g) bool: False for the genes ``canonicalize`` zeroes (None: none here)."""
        if not self._depth_rules and not self._skip_rules:
            return None
        keep = np.ones(g.shape, dtype=bool)
        for dgene, cols, table in self._depth_rules:  # one gather per stage
            keep[:, cols] = table.take(g[:, dgene], axis=0)
        for op_gene, cols, kept in self._skip_rules:
            active = kept.take(g[:, op_gene])
            for c in cols:
                keep[:, c] &= active
        return keep

    @functools.cached_property
    def _active_rules(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Per depth gene: (the gene, its stage's block positions, a (depth choice,
        position) bool table)."""
        out = []
        for s, dgene in self._depth_genes.items():
            where = [p for p, pos in enumerate(self.positions) if pos.stage == s]
            index = np.array([self.positions[p].index for p in where])
            out.append((dgene, np.array(where, dtype=np.intp),
                        np.asarray(self._values[dgene])[:, None] > index[None, :]))
        return out

    def active_mask(self, genes: np.ndarray) -> np.ndarray:
        """(n, block positions) bool: whether each block runs (its index in the stage is
        below the stage's depth; OFA's 20 blocks)."""
        g = np.asarray(genes)
        out = np.ones((len(g), len(self.positions)), dtype=bool)
        for dgene, where, table in self._active_rules:
            out[:, where] = table.take(g[:, dgene], axis=0)
        return out

    # --------------------------------------------------------------- features
    def zeroed_genes(self, genes: np.ndarray) -> np.ndarray | None:
        """(n, g) bool: genes whose one-hot ``features`` zeroes (``features: {inactive:
        zero}``: the genes of inactive blocks, as OFA's), None when the features zero none."""
        if self.definition.features.get("inactive") != "zero" or self._canon_noop:
            return None
        keep = self._keep_mask(np.asarray(genes))
        return np.zeros(np.shape(genes), dtype=bool) if keep is None else ~keep

    def resolution_area(self, genes: np.ndarray) -> np.ndarray | None:
        """(n,) float32 ``(resolution / largest resolution) ** 2`` when the features include
        it (``features: {resolution: area}``, OFA's first extra feature), else None."""
        if self.definition.features.get("resolution") != "area" or self._res_gene is None:
            return None
        res = np.asarray(self.definition.resolutions, dtype=np.float32)
        return (res.take(np.asarray(genes)[:, self._res_gene].astype(np.int64))
                / float(res.max())) ** 2

    def features(self, genes: np.ndarray) -> np.ndarray:
        """One-hot genes + log FLOPs + log params (float32), as every space's; a definition's
        ``features`` may zero the one-hot of inactive blocks' genes and put the relative
        input area first among the extra features (OFA-MobileNetV3's features)."""
        if not self.definition.features:
            return super().features(genes)
        onehot = self.one_hot(genes)
        zeroed = self.zeroed_genes(genes)
        if zeroed is not None:
            onehot *= np.repeat(~zeroed, self.cardinalities, axis=1)
        extra = [np.log1p(self.flops(genes)), np.log1p(self.params(genes))]
        area = self.resolution_area(genes)
        if area is not None:
            extra.insert(0, area)
        return np.concatenate([onehot, np.stack(extra, axis=1).astype(np.float32)], axis=1)
