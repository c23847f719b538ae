"""Search spaces: ``get_space(name)`` and ``list_spaces()``."""

from __future__ import annotations

import functools

from oracle_server.errors import NotFound
from oracle_server.spaces.base import GENE_DTYPE, SearchSpace, Table
from oracle_server.spaces.fbnet import FBNet
from oracle_server.spaces.nasbench201 import NASBench201
from oracle_server.spaces.ofa_mbv3 import OFAMobileNetV3

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
        raise NotFound(f"unknown search space '{name}' (known: {', '.join(_SPACES)})") from None
