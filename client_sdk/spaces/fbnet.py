"""FBNet's layout, read from its definition (``spaces/definitions/fbnet.yaml``).

The served ``fbnet`` space is that definition (``get_space("fbnet")``, a ``DefinedSpace``);
there is no FBNet class any more. This module only exposes the layout constants some
callers still import — ``client_sdk.measure.fbnet`` (the reference network of
``benchmarks/studies/block_lut.py``) and a few benchmarks — derived from the definition
(``spaces.shipped_definition``, the one parse ``get_space`` uses too), so they cannot
drift from it.
"""

from __future__ import annotations

from client_sdk.spaces import shipped_definition

_D = shipped_definition("fbnet")  # parsed once, shared with get_space("fbnet")
assert _D is not None
_CANDIDATES = dict(_D.stages[0].ops or ())
OPS: tuple[str, ...] = tuple(_CANDIDATES)
STAGES: tuple[tuple[int, int, int], ...] = tuple(
    (st.max_depth, st.out, st.stride) for st in _D.stages
)
NUM_BLOCKS = sum(n for n, _, _ in STAGES)
INPUT_RESOLUTION = _D.resolutions[0]
STEM_CHANNELS = _D.stem[0].out
HEAD_CHANNELS = _D.head[0].out
NUM_CLASSES = _D.head[-1].out
assert all(dict(st.ops or ()) == _CANDIDATES for st in _D.stages)


def parse_op(op: str) -> tuple[int, int, int] | None:
    """``k5_e6_g2`` -> (kernel 5, expansion 6, groups 2); ``skip`` -> None."""
    cand = _CANDIDATES[op]
    if cand.get("op") == "skip":
        return None
    return int(cand["kernel"]), int(cand["expand"]), int(cand.get("groups", 1))


def block_layout() -> list[tuple[int, int, int, int]]:
    """Per block: (in channels, out channels, stride, input spatial size)."""
    layout = []
    c_in, size = STEM_CHANNELS, INPUT_RESOLUTION // 2
    for n, c, s in STAGES:
        for i in range(n):
            stride = s if i == 0 else 1
            layout.append((c_in, c, stride, size))
            size = (size + stride - 1) // stride
            c_in = c
    return layout


def block_cost(op: str, c_in: int, c_out: int, stride: int, size: int) -> tuple[float, float]:
    """(MACs, params) of one block, BN folded into params as 2 per channel."""
    out = (size + stride - 1) // stride
    spec = parse_op(op)
    if spec is None:
        if c_in == c_out and stride == 1:
            return 0.0, 0.0
        return float(c_in * c_out * out * out), float(c_in * c_out + 2 * c_out)
    kernel, expand, groups = spec
    mid = c_in * expand
    macs = c_in * mid / groups * size * size + mid * kernel * kernel * out * out
    macs += mid * c_out / groups * out * out
    params = c_in * mid / groups + mid * kernel * kernel + mid * c_out / groups
    params += 2 * (2 * mid + c_out)
    return float(macs), float(params)
