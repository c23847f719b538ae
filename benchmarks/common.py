"""What several benchmarks share (they never import ``tests``): the checkout root, the proxy
cache the test suite builds (reused, so a benchmark need not train its own) and HELP's
NAS-Bench-201 device split. Servers are started with :class:`oracle_server.launch.ServerProcess`.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The test suite's proxy artifacts (``ORACLE_TEST_CACHE`` overrides, as for the tests).
TEST_CACHE = Path(os.environ.get("ORACLE_TEST_CACHE", ROOT / ".oracle" / "test-cache"))


def help_nb201_split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """HELP's NB201 (meta-train devices, test devices)."""
    from oracle_server.evaluation import HELP_SPLITS

    split = HELP_SPLITS["nasbench201"]
    return split.train, split.test


def nb201_non_train_devices() -> tuple[str, ...]:
    """Every NB201 table device outside HELP's meta-train set (held out of the proxy)."""
    from client_sdk.spaces import get_space

    train, _ = help_nb201_split()
    return tuple(d for d in get_space("nasbench201").table.devices if d not in train)
