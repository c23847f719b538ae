"""Basis devices for a space with no bundled table, transferred from the other spaces.

A space from a definition (``client_sdk.spaces.defined``) has no measured table, so the
proxy has nothing to learn from. Every bundled hardware setting, though, has tables in one
or more bundled spaces, and its layer-level model (``layer_level.zero_shot``: coefficients
on the six space-independent descriptors in absolute units, fit on its tables) answers in
the new space zero-shot; so does a non-negative linear model on the richer descriptors of
``transfer_features`` (``<device>~rich``: MACs by kernel type and output area, launches by
layer kind, per-layer rooflines). ``transfer_table`` evaluates both on a fixed sample of the
new space; the proxy, the descriptor prior and every head are then built on that table as
for a bundled space. The transferred basis devices are used as a basis only (never served
as table devices): their zero-shot quality in the new space is unknown.
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


@functools.cache
def _sources(exclude: tuple[str, ...] = ()) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Hardware setting -> [(source space, table rows used)] over the bundled spaces."""
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name in BUNDLED:
        if name in exclude:
            continue
        sp = get_space(name)
        rng = np.random.default_rng([SEED, BUNDLED.index(name)])
        n = len(sp.table.genes)
        rows = np.sort(rng.choice(n, min(n, ROWS_PER_SPACE), replace=False))
        for dev in sp.table.devices:
            out.setdefault(ALIASES.get(dev, dev), []).append((name, rows))
    return out


#: every hardware setting is transferred twice: its six-descriptor zero-shot model and a
#: non-negative linear model on the richer descriptors (``transfer_features``: MACs by
#: kernel type and by output area, launches by layer kind, per-layer rooflines), chosen
#: on HELP train + validation devices of the three spaces under leave-space-out
#: (``benchmarks/leave_space_out_served.py --devices train validation``)
RICH_SUFFIX = "~rich"
METHOD = "six+rich1"  # part of the fingerprint: a change of method rebuilds cached proxies


def transfer_devices(exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    names = sorted(_sources(exclude))
    return tuple(names + [d + RICH_SUFFIX for d in names])


@functools.cache
def _rich_source(device: str, exclude: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A bundled hardware setting's (rich descriptors (n, R), latency ms (n,))."""
    from oracle_server.predictor.transfer_features import rich_descriptors

    desc, ms = [], []
    for name, rows in _sources(exclude)[device]:
        sp = get_space(name)
        col = next(d for d in sp.table.devices if ALIASES.get(d, d) == device)
        desc.append(rich_descriptors(name, sp.table.genes[rows]))
        ms.append(sp.table.device_column(col)[rows])
    return np.concatenate(desc), np.concatenate(ms)


@functools.cache
def rich_coef(device: str, exclude: tuple[str, ...] = ()) -> np.ndarray:
    """(1 + R,) non-negative ms coefficients of ``[1, rich / RICH_SCALE]`` fit on the
    device's source tables, rows weighted by 1 / latency (relative error)."""
    from oracle_server.predictor.layer_level import nnls_coef
    from oracle_server.predictor.transfer_features import RICH_SCALE

    r, y = _rich_source(device, exclude)
    w = 1.0 / y
    return nnls_coef(np.c_[np.ones(len(r)), r / RICH_SCALE] * w[:, None], y * w)


def _column(device: str, desc6: np.ndarray, rich: np.ndarray,
            exclude: tuple[str, ...]) -> np.ndarray:
    from oracle_server.predictor.transfer_features import RICH_SCALE

    if device.endswith(RICH_SUFFIX):
        c = rich_coef(device[: -len(RICH_SUFFIX)], exclude)
        return np.c_[np.ones(len(rich)), rich / RICH_SCALE] @ c
    return device_model(device, desc6, exclude).predict_ms(desc6)


@functools.cache
def _source_table(device: str, exclude: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A bundled hardware setting's (descriptors (n, 6), latency ms (n,)) over its tables."""
    desc, ms = [], []
    for name, rows in _sources(exclude)[device]:
        sp = get_space(name)
        col = next(d for d in sp.table.devices if ALIASES.get(d, d) == device)
        desc.append(descriptors(name, sp.table.genes[rows])[:, :6])
        ms.append(sp.table.device_column(col)[rows])
    return np.concatenate(desc), np.concatenate(ms)


def device_model(device: str, target_desc6: np.ndarray, exclude: tuple[str, ...] = ()):
    """A bundled hardware setting's zero-shot layer-level model (``layer_level.zero_shot``)
    for a new space whose candidates have descriptors ``target_desc6``."""
    from oracle_server.predictor.layer_level import zero_shot

    return zero_shot(*_source_table(device, exclude), target_desc6=target_desc6)


def transfer_table(space: SearchSpace, exclude: tuple[str, ...] = ()) -> Table:
    """The new space's sample (``space.table.genes``) with every transferred basis device's
    zero-shot latency (ms)."""
    genes = space.table.genes
    desc6 = descriptors(space.name, genes)[:, :6]
    devices = transfer_devices(exclude)
    from oracle_server.predictor.transfer_features import rich_descriptors

    rich = rich_descriptors(space.name, genes)
    lat = np.stack([np.maximum(_column(d, desc6, rich, exclude), 1e-3) for d in devices],
                   axis=1)
    return Table(genes, space.table.index, devices, lat, {})


def fingerprint(space: SearchSpace) -> str:
    """What the transferred table depends on beyond the bundled data: the definition."""
    definition = getattr(space, "definition", None)
    blob = definition.canonical_json() if definition is not None else space.name
    return hashlib.sha256(f"{blob}|{SEED}|{ROWS_PER_SPACE}|{METHOD}".encode()).hexdigest()[:16]
