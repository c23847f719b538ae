"""The transferred basis of a space with no table, evaluated exactly (``TransferredBasis``).

Every basis column of such a space is a bundled hardware setting's zero-shot model
(``cross_space``): a layer-level model of the six descriptors, or a non-negative linear model
of the rich descriptors (``<device>~rich``). The proxy is trained on their values over a
fixed sample of the space (``cross_space.transfer_table``), but Rank and head fitting read
the models themselves: the six descriptors and the rich columns a head reads are gather-sums
of the space's tables (the rich ones folded into one projected gather for all the columns
read), then a few element-wise operations per column. That is the same function the trees
approximate, without the trees' error, and ~5x cheaper than evaluating them: a definition's
Rank of 10k architectures spent most of its time in the proxy's variables and tables.

Chosen on the leave-space-out served benchmark, HELP train + validation devices only
(``benchmarks/leave_space_out_served.py --devices train validation``): NB-201 0.958 / FBNet
0.862 / OFA 0.880 against the trees' 0.958 / 0.860 / 0.880.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from client_sdk.spaces import SearchSpace
from client_sdk.spaces.descriptors import descriptors
from oracle_server.predictor.layer_head import LayerHead, LayerInputs

#: the smallest latency (ms) a transferred column takes (as in its table)
FLOOR_MS = 1e-3


@dataclass(frozen=True)
class TransferredBasis:
    """Per basis column (``devices``) its zero-shot model: ``{"six": LayerHead params}`` or
    ``{"rich": [c0, c_1..c_R]}`` (ms = c0 + rich / RICH_SCALE @ c). JSON-safe."""

    devices: tuple[str, ...]
    members: tuple[dict, ...]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, space: SearchSpace, devices: Sequence[str],
              exclude: tuple[str, ...] = ()) -> TransferredBasis:
        """The models of ``devices`` (``cross_space.transfer_devices``) for ``space``, fit on
        the bundled spaces but ``exclude``; the six-descriptor ones are conditioned on the
        space's fixed sample (``space.table.genes``)."""
        from oracle_server.predictor import cross_space as cs

        target = descriptors(space.name, space.table.genes)[:, :6]
        members = []
        for d in devices:
            if d.endswith(cs.RICH_SUFFIX):
                coef = cs.rich_coef(d[: -len(cs.RICH_SUFFIX)], exclude)
                members.append({"rich": [float(c) for c in coef]})
            else:
                members.append({"six": cs.device_model(d, target, exclude).to_params()})
        return cls(tuple(devices), tuple(members))

    def subset(self, devices: Sequence[str]) -> TransferredBasis:
        index = {d: i for i, d in enumerate(self.devices)}
        return TransferredBasis(tuple(devices), tuple(self.members[index[d]] for d in devices))

    def to_params(self) -> dict:
        return {"devices": list(self.devices), "members": list(self.members)}

    @classmethod
    def from_params(cls, params: dict) -> TransferredBasis:
        return cls(tuple(params["devices"]), tuple(params["members"]))

    # ---------------------------------------------------------------- evaluate
    def columns(self, space: SearchSpace, genes: np.ndarray,
                cols: Sequence[int] | None = None) -> np.ndarray:
        """(n, len(cols)) latency (ms) of basis columns ``cols`` (default: all) on ``genes``."""
        cols = list(range(len(self.devices))) if cols is None else list(cols)
        out = np.empty((len(genes), len(cols)))
        six = [i for i, c in enumerate(cols) if "six" in self.members[c]]
        rich = [i for i, c in enumerate(cols) if "rich" in self.members[c]]
        if six:
            inputs = LayerInputs(descriptors(space.name, genes, self._six_matrix(space)))
            for i in six:  # the design, power-law inputs and log FLOPs computed once
                out[:, i] = self._head(cols[i]).predict_ms(inputs)
        if rich:
            out[:, rich] = self._rich(space, genes, tuple(cols[i] for i in rich))
        return np.maximum(out, FLOOR_MS, out=out)

    def _six_matrix(self, space: SearchSpace) -> np.ndarray:
        """(D, 6): the six descriptors out of the space's D (a gather of 6 columns)."""
        key = ("six", space.name)
        got = self._cache.get(key)
        if got is None:
            width = descriptors(space.name, space.table.genes[:1]).shape[1]
            got = self._cache[key] = np.eye(width)[:, :6]
        return got

    def _head(self, col: int) -> LayerHead:
        key = ("head", col)
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = LayerHead.from_params(self.members[col]["six"])
        return got

    def _rich(self, space: SearchSpace, genes: np.ndarray, cols: tuple[int, ...]) -> np.ndarray:
        """The rich columns ``cols``: the rich descriptors folded with their coefficients
        (one gather for all of them)."""
        from oracle_server.predictor.transfer_features import RICH_SCALE, rich_descriptors

        coef = np.array([self.members[c]["rich"] for c in cols]).T  # (1 + R, k)
        return rich_descriptors(space.name, genes, coef[1:] / RICH_SCALE[:, None]) + coef[0]
