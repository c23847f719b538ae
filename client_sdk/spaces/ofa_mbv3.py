"""OFA-MobileNetV3's layout, read from its definition (``spaces/definitions/ofa_mbv3.yaml``).

The served ``ofa_mbv3`` space is that definition (``get_space("ofa_mbv3")``, a
``DefinedSpace``); there is no OFA class any more. Genes (46): ``resolution`` (128..224 step
4), ``depth0..4`` (2, 3, 4), ``kernel0..19`` (3, 5, 7), ``expand0..19`` (3, 4, 6); block
``4*s + b`` is active when ``b < depth_s``. This module exposes the layout constants some
callers still import — the reference network ``client_sdk.measure.ofa`` (what
``build_model`` measures) and a few benchmarks — derived from the definition, so they
cannot drift from it.
"""

from __future__ import annotations

import numpy as np

from client_sdk.spaces import shipped_definition
from client_sdk.spaces.defined_tables import make_divisible

__all__ = ["make_divisible"]

_D = shipped_definition("ofa_mbv3")  # parsed once, shared with get_space("ofa_mbv3")
assert _D is not None
RESOLUTIONS: tuple[int, ...] = _D.resolutions
DEPTHS: tuple[int, ...] = _D.stages[0].depths
KERNELS: tuple[int, ...] = dict(_D.stages[0].factors)["kernel"]
EXPANDS: tuple[int, ...] = tuple(int(e) for e in dict(_D.stages[0].factors)["expand"])
NUM_STAGES = len(_D.stages)
MAX_DEPTH = max(DEPTHS)
NUM_BLOCKS = NUM_STAGES * MAX_DEPTH
WIDTHS: tuple[int, ...] = tuple(st.out for st in _D.stages)
STRIDES: tuple[int, ...] = tuple(st.stride for st in _D.stages)
USE_SE: tuple[bool, ...] = tuple(bool(st.block.get("se", False)) for st in _D.stages)
FIRST_CHANNELS = _D.stem[0].out
FINAL_EXPAND = _D.head[0].out
FEATURE_MIX = _D.head[2].out
NUM_CLASSES = _D.head[-1].out
assert all(
    st.depths == DEPTHS and dict(st.factors) == dict(_D.stages[0].factors) for st in _D.stages
)

RES_GENE = 0
DEPTH_GENES = slice(1, 1 + NUM_STAGES)
KERNEL_GENES = slice(1 + NUM_STAGES, 1 + NUM_STAGES + NUM_BLOCKS)
EXPAND_GENES = slice(1 + NUM_STAGES + NUM_BLOCKS, 1 + NUM_STAGES + 2 * NUM_BLOCKS)


def _half(size: int) -> int:
    return (size + 1) // 2


def active_mask(genes: np.ndarray) -> np.ndarray:
    """(n, 20) bool: block ``4*s+b`` active iff ``b < depth_s``."""
    depth = np.asarray(DEPTHS)[np.asarray(genes)[:, DEPTH_GENES].astype(np.int64)]
    return (np.arange(MAX_DEPTH)[None, None, :] < depth[:, :, None]).reshape(len(genes), -1)


def block_cost(
    c_in: int, c_out: int, kernel: int, expand: int, stride: int, size: int, se: bool
) -> tuple[float, float]:
    """(MACs, params) of one MBConv block at input spatial ``size``."""
    mid = make_divisible(c_in * expand)
    out = _half(size) if stride == 2 else size
    macs = c_in * mid * size * size + mid * kernel * kernel * out * out + mid * c_out * out * out
    params = c_in * mid + mid * kernel * kernel + mid * c_out + 2 * (2 * mid + c_out)
    if se:
        red = make_divisible(mid // 4)
        macs += 2 * mid * red
        params += 2 * mid * red + mid + red
    return float(macs), float(params)
