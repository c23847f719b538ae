"""The NAS-Bench-201 oracle that the tests and the benchmarks run against: the proxy cache the
test suite builds (:data:`TEST_CACHE`, reused by the benchmarks so they need not train their
own), HELP's device split and the ``oracle-server serve`` flags of a server on that proxy
with every device outside HELP's meta-train set held out (:func:`nb201_serve_args`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO", "TEST_CACHE", "help_nb201_split", "nb201_non_train_devices", "nb201_serve_args"]

#: The checkout's root.
REPO = Path(__file__).resolve().parents[2]
#: Proxy artifacts shared by every test run on this checkout (built once, then loaded);
#: ``ORACLE_TEST_CACHE`` overrides.
TEST_CACHE = Path(os.environ.get("ORACLE_TEST_CACHE", REPO / ".oracle" / "test-cache"))


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


def nb201_serve_args(cache_dir: Path = TEST_CACHE) -> list[str]:
    """``oracle-server serve`` flags of a NAS-Bench-201 server on the proxy of ``cache_dir``
    with every device outside HELP's meta-train set held out (they can be registered)."""
    return [
        "--spaces",
        "nasbench201",
        "--cache-dir",
        str(cache_dir),
        "--holdout-devices",
        ",".join(nb201_non_train_devices()),
    ]
