"""Search spaces: ``get_space(name)`` and ``list_spaces()``."""

from __future__ import annotations

import functools

from client_sdk.errors import SpaceNotFound
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace, Table
from client_sdk.spaces.fbnet import FBNet
from client_sdk.spaces.nasbench201 import NASBench201
from client_sdk.spaces.ofa_mbv3 import OFAMobileNetV3

_SPACES: dict[str, type[SearchSpace]] = {
    cls.name: cls for cls in (NASBench201, FBNet, OFAMobileNetV3)
}

__all__ = ["GENE_DTYPE", "SearchSpace", "Table", "get_space", "list_spaces"]


def list_spaces() -> list[str]:
    return list(_SPACES)


@functools.cache
def get_space(name: str) -> SearchSpace:
    """The (process-wide, immutable) space object; ``NotFound`` for an unknown name."""
    try:
        return _SPACES[name]()
    except KeyError:
        known = ", ".join(_SPACES)
        raise SpaceNotFound(f"unknown search space '{name}' (known: {known})") from None
