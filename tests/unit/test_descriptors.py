"""Hardware-agnostic descriptors against the torch builders (forward hooks), and properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from client_sdk.measure.builders import build_model, example_input
from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import (
    BASE_NAMES,
    degenerate,
    descriptor_names,
    descriptors,
)

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")


def _hooked_counts(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Dense / depthwise MACs and the number of convolutions + linears actually executed."""
    out = {"dense": 0.0, "dw": 0.0, "layers": 0}

    def hook(mod: nn.Module, inp: tuple, res: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            macs = res.numel() * mod.in_channels // mod.groups * k
            dw = mod.groups == mod.in_channels == mod.out_channels and mod.groups > 1
            out["dw" if dw else "dense"] += macs
        else:
            out["dense"] += mod.in_features * mod.out_features
        out["layers"] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return out


@pytest.mark.parametrize("name", SPACES)
def test_macs_split_matches_torch(name: str) -> None:
    sp = get_space(name)
    genes = sp.sample(3, rng=11)
    desc = descriptors(name, genes)
    names = descriptor_names(name)
    assert desc.shape == (3, len(names)) and names[: len(BASE_NAMES)] == BASE_NAMES
    for row, d in zip(genes, desc, strict=True):
        model = build_model(sp, row)
        got = _hooked_counts(model, example_input(sp, row))
        assert d[0] == pytest.approx(got["dense"], rel=1e-9)
        assert d[1] == pytest.approx(got["dw"], rel=1e-9)
        # every executed conv / linear is one kernel; element-wise layers come on top
        assert got["layers"] <= d[4] <= 3 * got["layers"]


@pytest.mark.parametrize("name", SPACES)
def test_totals_match_flops_and_params(name: str) -> None:
    sp = get_space(name)
    genes = sp.sample(200, rng=3)
    d = descriptors(name, genes)
    np.testing.assert_allclose(d[:, 0] + d[:, 1], sp.flops(genes), rtol=1e-12)
    np.testing.assert_allclose(d[:, len(BASE_NAMES):].sum(1), sp.flops(genes), rtol=1e-12)
    np.testing.assert_allclose(d[:, 2], sp.params(genes), rtol=1e-12)
    assert (d >= 0).all()


def test_skip_executes_nothing_fbnet() -> None:
    sp = get_space("fbnet")
    skip = sp.choices[0].index("skip")
    genes = sp.sample(50, rng=1)
    more = genes.copy()
    j = 5  # block 5 keeps its shape (stage 2, not the first block): skip is identity
    more[:, j] = skip
    genes[:, j] = 0
    d_skip, d_op = descriptors("fbnet", more), descriptors("fbnet", genes)
    assert (d_skip[:, 4] < d_op[:, 4]).all() and (d_skip[:, 3] < d_op[:, 3]).all()


def test_nb201_degenerate_cells_are_input_independent() -> None:
    """A flagged cell's output does not depend on its input: the network output is constant."""
    sp = get_space("nasbench201")
    flags = degenerate("nasbench201", sp.table.genes)
    assert flags.sum() == 341  # 5^6 cells whose output node is unreachable
    genes = sp.table.genes[np.flatnonzero(flags)[:2]]
    live = sp.table.genes[np.flatnonzero(~flags)[:2]]
    for row, expect_constant in [(g, True) for g in genes] + [(g, False) for g in live]:
        model = build_model(sp, row)
        a = example_input(sp, row, seed=1)
        b = example_input(sp, row, seed=2)
        with torch.inference_mode():
            same = torch.allclose(model(a), model(b))
        assert same == expect_constant
