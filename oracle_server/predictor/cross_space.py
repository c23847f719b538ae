"""Basis devices for a space with no bundled table, transferred from the other spaces.

A space from a definition (``client_sdk.spaces.defined``) has no measured table, so the
proxy has nothing to learn from. Every bundled hardware setting, though, has tables in one
or more bundled spaces, and its layer-level model (``layer_level.zero_shot``: coefficients
on the six space-independent descriptors in absolute units, fit on its tables) answers in
the new space zero-shot; so does a non-negative linear model on the richer descriptors of
``transfer_features`` (``<device>~rich``: MACs by kernel type and output area, launches by
layer kind, per-layer rooflines). ``transferred`` holds both models of every setting
(``TransferredBasis``) and ``transfer_table`` evaluates them on a fixed sample of the new
space; the proxy and the descriptor prior are built on that table as for a bundled space,
while the basis columns the heads read are the models themselves (``LatencyModel.basis``).
The transferred basis devices are used as a basis only (never served as table devices):
their zero-shot quality in the new space is unknown.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from client_sdk.spaces import SearchSpace, Table, get_space
from client_sdk.spaces.descriptors import descriptors

BUNDLED = ("fbnet", "ofa_mbv3", "nasbench201")
#: the same GPU under another name in OFA's table
ALIASES = {"titan_xp_1": "titanxp_1", "titan_xp_32": "titanxp_32", "titan_xp_64": "titanxp_64"}
ROWS_PER_SPACE = 2000  # rows of each source table a device's model is fit on (balance)
SEED = 20261206


def has_table(space: SearchSpace) -> bool:
    return len(space.table.devices) > 0


def hardware_name(device: str) -> str:
    """A table device's hardware setting across the bundled spaces (OFA's ``titan_xp_*``
    is FBNet's and NB-201's ``titanxp_*``)."""
    return ALIASES.get(device, device)


@functools.cache
def _space_sample(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bundled space's fixed source rows (at most ``ROWS_PER_SPACE``), their six and
    their rich descriptors: computed once per space, shared by all its devices."""
    from oracle_server.predictor.transfer_features import rich_descriptors

    sp = get_space(name)
    rng = np.random.default_rng([SEED, BUNDLED.index(name)])
    n = len(sp.table.genes)
    rows = np.sort(rng.choice(n, min(n, ROWS_PER_SPACE), replace=False))
    genes = sp.table.genes[rows]
    return rows, descriptors(name, genes)[:, :6], rich_descriptors(name, genes)


@functools.cache
def _sources(exclude: tuple[str, ...] = ()) -> dict[str, list[tuple[str, str]]]:
    """Hardware setting -> [(source space, its column there)] over the bundled spaces."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name in BUNDLED:
        if name in exclude:
            continue
        for dev in get_space(name).table.devices:
            out.setdefault(hardware_name(dev), []).append((name, dev))
    return out


@functools.cache
def _source(device: str, exclude: tuple[str, ...] = ()
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bundled hardware setting's (six descriptors (n, 6), rich descriptors (n, R),
    latency ms (n,)) over its source tables."""
    desc6, rich, ms = [], [], []
    for name, column in _sources(exclude)[device]:
        rows, d6, r = _space_sample(name)
        desc6.append(d6)
        rich.append(r)
        ms.append(get_space(name).table.device_column(column)[rows])
    return np.concatenate(desc6), np.concatenate(rich), np.concatenate(ms)


#: every hardware setting is transferred twice: its six-descriptor zero-shot model and a
#: non-negative linear model on the richer descriptors (``transfer_features``: MACs by
#: kernel type and by output area, launches by layer kind, per-layer rooflines), chosen
#: on HELP train + validation devices of the three spaces under leave-space-out
#: (``benchmarks/leave_space_out_served.py --devices train validation``)
RICH_SUFFIX = "~rich"
#: part of the fingerprint: a change of method rebuilds cached proxies ("six2": the
#: zero-shot linear member's target ridge and the source-Spearman member gate; "exact":
#: the model serves the transferred columns themselves, ``transferred_basis``)
METHOD = "six2+rich1+exact"


def transfer_devices(exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    names = sorted(_sources(exclude))
    return tuple(names + [d + RICH_SUFFIX for d in names])


def _rich_design(rich: np.ndarray) -> np.ndarray:
    from oracle_server.predictor.transfer_features import RICH_SCALE

    return np.c_[np.ones(len(rich)), rich / RICH_SCALE]


@functools.cache
def rich_coef(device: str, exclude: tuple[str, ...] = ()) -> np.ndarray:
    """(1 + R,) non-negative ms coefficients of ``[1, rich / RICH_SCALE]`` fit on the
    device's source tables, rows weighted by 1 / latency (relative error)."""
    from oracle_server.predictor.layer_level import nnls_coef

    _, rich, y = _source(device, exclude)
    w = 1.0 / y
    return nnls_coef(_rich_design(rich) * w[:, None], y * w)


def device_model(device: str, target_desc6: np.ndarray, exclude: tuple[str, ...] = ()):
    """A bundled hardware setting's zero-shot layer-level model (``layer_level.zero_shot``)
    for a new space whose candidates have descriptors ``target_desc6``."""
    from oracle_server.predictor.layer_level import zero_shot

    desc6, _, ms = _source(device, exclude)
    return zero_shot(desc6, ms, target_desc6=target_desc6)


def transfer_table(space: SearchSpace, exclude: tuple[str, ...] = (), basis=None) -> Table:
    """The new space's sample (``space.table.genes``) with every transferred basis device's
    zero-shot latency (ms): ``basis`` (default ``transferred(space, exclude)``) on it."""
    basis = transferred(space, exclude) if basis is None else basis
    latency = basis.columns(space, space.table.genes)
    return Table(space.table.genes, space.table.index, basis.devices, latency, {})


def transferred(space: SearchSpace, exclude: tuple[str, ...] = ()):
    """Every transferred basis device's model for ``space`` (``TransferredBasis``), which
    the served model evaluates directly (Rank, head fits) and the proxy is trained on."""
    from oracle_server.predictor.transferred_basis import TransferredBasis

    return TransferredBasis.build(space, transfer_devices(exclude), exclude)


def fingerprint(space: SearchSpace) -> str:
    """What the transferred table depends on beyond the bundled data: the definition."""
    definition = getattr(space, "definition", None)
    blob = definition.canonical_json() if definition is not None else space.name
    return hashlib.sha256(f"{blob}|{SEED}|{ROWS_PER_SPACE}|{METHOD}".encode()).hexdigest()[:16]
