"""MAC / parameter counting of built networks, cross-checked against the analytic counts.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls;
FLOPs / 2), which is exactly what the spaces' analytic ``flops()`` counts: BN, activations,
pooling, element-wise sums and the squeeze-excite multiply are not counted on either side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from client_sdk.measure.builders import build_model, count_parameters, example_input
from client_sdk.spaces import SearchSpace, get_space

#: built minus analytic parameter count, constant over each space (the variable, per-gene
#: part is exact). These are omissions in the analytic fixed part of the space modules:
#: - nasbench201: the analytic count gives each ResNet reduction block 6*c_out BN params but
#:   the NB201 block has only 2 BNs (conv_a, conv_b; the avgpool+1x1 shortcut has none):
#:   -2*32 - 2*64 = -192.
#: - fbnet: BN of the stem conv (2*16) and of the 1x1 head conv (2*1984) = +4000.
#: - ofa_mbv3: BN of the first conv (2*16), of the first block's depthwise and project convs
#:   (2*16 + 2*16), of the final 1x1 expand (2*960), and the classifier bias (1000) = +3016.
#: Once the space modules are patched these become 0 (tests accept either value).
KNOWN_PARAM_GAPS: dict[str, int] = {"nasbench201": 0, "fbnet": 0, "ofa_mbv3": 0}


def count_macs(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass *per sample* of ``x``."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2.0 / x.shape[0]


@dataclass(frozen=True)
class CostCheck:
    """Built-network vs analytic counts of one architecture."""

    arch: str
    params: int
    analytic_params: float
    macs: float
    analytic_macs: float

    @property
    def params_gap(self) -> float:
        return self.params - self.analytic_params

    @property
    def macs_rel_dev(self) -> float:
        return abs(self.macs - self.analytic_macs) / self.analytic_macs


def cross_check(space: str | SearchSpace, genes: np.ndarray) -> list[CostCheck]:
    """Build every gene vector of ``genes (n, g)`` at its native resolution and compare."""
    sp = get_space(space) if isinstance(space, str) else space
    genes = sp.validate(genes)
    analytic_p = sp.params(genes)
    analytic_m = sp.flops(genes)
    out = []
    for i, row in enumerate(genes):
        model = build_model(sp, row)
        macs = count_macs(model, example_input(sp, row, batch_size=1))
        out.append(
            CostCheck(
                arch=sp.format(row),
                params=count_parameters(model),
                analytic_params=float(analytic_p[i]),
                macs=macs,
                analytic_macs=float(analytic_m[i]),
            )
        )
    return out


def summarize(checks: list[CostCheck]) -> dict[str, float]:
    """Max relative MAC deviation and the range of the parameter gap."""
    gaps = [c.params_gap for c in checks]
    return {
        "n": float(len(checks)),
        "max_macs_rel_dev": max(c.macs_rel_dev for c in checks),
        "min_params_gap": min(gaps),
        "max_params_gap": max(gaps),
    }
