"""Clear errors for parts of the distribution whose extra is not installed.

The plain install is the client; ``client_sdk.search`` needs ``[search]``,
``client_sdk.measure`` needs ``[measure]``, the server needs ``[server]`` (see README,
"Install variants").
"""

from __future__ import annotations

import importlib.util

DISTRIBUTION = "latency-oracle"


class MissingExtra(ImportError):
    """A module of this distribution needs an extra that is not installed."""


def require(extra: str, what: str, *modules: str) -> None:
    """Raise :class:`MissingExtra` naming the extra when any of ``modules`` is absent."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(
            f"{what} needs the [{extra}] extra (missing: {', '.join(missing)}): "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )
