"""Build the torch network of an architecture of any supported space, with its input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from client_sdk.measure import defined, ofa
from client_sdk.spaces import SearchSpace, get_space
from client_sdk.spaces.defined import DefinedSpace

#: hand-written networks measured for these spaces: OFA-MobileNetV3, whose reference
#: network mirrors the ``ofa`` library's modules (h-swish as ``x * relu6(x + 3) / 6``,
#: squeeze-excite by 1x1 convs and that h-sigmoid), which ``measure.defined`` builds from
#: the definition with other torch ops (``nn.Hardswish``, linears, ``nn.Hardsigmoid``; the
#: same parameters and MACs): measuring the same modules as before keeps OFA measurements
#: comparable
_BUILDERS: dict[str, Callable[[np.ndarray], nn.Module]] = {
    "ofa_mbv3": ofa.build,
}


def supported_spaces() -> list[str]:
    """Spaces with a torch builder: the bundled ones and every defined space (FBNet and
    NAS-Bench-201 are: ``measure.defined`` builds them from their definitions)."""
    from client_sdk.spaces import list_spaces

    return list(dict.fromkeys([*list_spaces(), *_BUILDERS]))


def _space(space: str | SearchSpace) -> SearchSpace:
    return get_space(space) if isinstance(space, str) else space


def build_model(space: str | SearchSpace, genes: np.ndarray) -> nn.Module:
    """The network of one gene vector ``(g,)`` (validated and canonicalised), in eval mode."""
    sp = _space(space)
    canonical = sp.validate(np.asarray(genes).reshape(1, -1))[0]
    if sp.name in _BUILDERS:
        return _BUILDERS[sp.name](canonical).eval()
    if isinstance(sp, DefinedSpace):
        return defined.build(sp, canonical).eval()
    raise ValueError(f"no torch builder for space '{sp.name}' (have {supported_spaces()})")


def input_resolution(space: str | SearchSpace, genes: np.ndarray | None = None) -> int | None:
    """The space's native input side: fixed per space, or the resolution gene (OFA).

    ``None`` for OFA when no genes are given (the resolution is per architecture).
    """
    sp = _space(space)
    if isinstance(sp, DefinedSpace):
        if genes is None and len(sp.definition.resolutions) > 1:
            return None
        return sp.globals_of(np.zeros(sp.num_genes, np.int64) if genes is None else genes)[0]
    raise ValueError(f"no torch builder for space '{sp.name}'")


def example_input(
    space: str | SearchSpace,
    genes: np.ndarray,
    batch_size: int = 1,
    resolution: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """A random ``(batch, 3, r, r)`` input; ``resolution`` overrides the native one."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    side = resolution if resolution is not None else input_resolution(space, genes)
    assert side is not None
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 3, side, side, generator=gen).to(device)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BN affine weights included, running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
