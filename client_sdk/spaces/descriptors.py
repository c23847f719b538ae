"""Hardware-agnostic architecture descriptors, computed from the architecture itself.

Every space's network is a fixed skeleton plus per-position choices (the blocks of a space
from a definition such as FBNet or OFA at a resolution, the cell edges of a cell space such
as NAS-Bench-201), so every descriptor is a sum of per-(position, choice) table entries
plus a fixed part, evaluated for a whole batch by one gather-sum (like ``flops``; the
tables are ``spaces.defined_tables``). Descriptors, per architecture:

* ``dense_macs``   multiply-accumulates of dense (incl. grouped) convolutions and linears;
* ``dw_macs``      multiply-accumulates of depthwise convolutions;
* ``weights``      parameter elements (weight bytes / 4);
* ``activations``  tensor elements read + written by the executed layers (memory traffic);
* ``kernels``      executed layers: convolutions (BN/activation fused), poolings, linears,
                   element-wise adds/multiplies/shuffles — skip/identity executes nothing;
* ``elementwise``  elements processed by element-wise / pooling layers;
* ``macs_stage{i}`` MACs per stage (per resolution), the per-resolution breakdown.

They follow the torch builders in ``client_sdk/measure`` layer by layer (checked by
``tests/unit/test_descriptors.py`` with forward hooks). A cell's ``zero`` op (NB-201's
``none``) is a multiply-by-zero in those builders (executed); cells whose output is
disconnected from their input (``degenerate``) are flagged separately, since some runtimes
prune them.
"""

from __future__ import annotations

import numpy as np

BASE_NAMES = ("dense_macs", "dw_macs", "weights", "activations", "kernels", "elementwise")


def descriptor_names(space: str) -> tuple[str, ...]:
    return _defined(space).descriptor_names()


def descriptors(space: str, genes: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
    """(n, D) float64 descriptors of a validated gene batch (see the module docstring).

    ``matrix`` (D, P): return ``descriptors @ matrix`` (n, P) instead, with ``matrix``
    folded into the per-(position, choice) tables first, so the batch pass gathers P
    values per position instead of D (a head linear in a few descriptor combinations
    reads only those; equal up to float rounding).
    """
    g = np.asarray(genes)
    if g.dtype.kind not in "iu":
        g = g.astype(np.int64)
    return _defined(space).descriptors(g, matrix)  # every space: its own tables


def _defined(space: str):  # -> spaces.defined.DefinedSpace
    """A space from a definition: it carries its own descriptor tables."""
    from client_sdk.spaces import get_space

    sp = get_space(space)
    if not hasattr(sp, "descriptor_names"):
        raise ValueError(f"no descriptors for space '{space}'")
    return sp


def degenerate(space: str, genes: np.ndarray) -> np.ndarray:
    """(n,) bool: architectures some runtimes prune to (almost) nothing (a cell space's
    cells whose output no non-``zero`` path reaches; ``CellSpace.degenerate``)."""
    from client_sdk.errors import SpaceNotFound
    from client_sdk.spaces import get_space

    try:
        flag = getattr(get_space(space), "degenerate", None)
    except SpaceNotFound:
        flag = None
    if flag is None:
        return np.zeros(len(genes), dtype=bool)
    return flag(np.asarray(genes))
