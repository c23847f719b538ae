"""The ``ofa`` library's subnet dicts as a native architecture form (``spaces.formats``).

``{"ks": [...], "e": [...], "d": [...], "r": [224]}`` (resolution also as ``"image_size"``
or ``"resolution"``, an int or a one-element list) for a space whose definition opts in with
``format: {native: ofa_subnet}`` (OFA-MobileNetV3's does). The keys map to the space's gene
groups: ``r`` the resolution gene, ``d`` the depth genes, ``ks`` the kernel genes, ``e`` the
expand genes, each value a choice of its gene (``check`` verifies at definition time that
the space has exactly these groups, of integer choices the same for every gene of a group).
Inactive blocks carry the first choice (canonical genes).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from client_sdk.errors import InvalidArchitecture, InvalidSpaceDefinition
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace

#: subnet key -> gene group, in gene order
GROUPS = (("r", "resolution"), ("d", "depth"), ("ks", "kernel"), ("e", "expand"))


def check(sp) -> None:  # sp: spaces.defined.DefinedSpace
    """Definition-time check of ``format.native: ofa_subnet`` against the gene groups."""
    groups = dict(sp._groups())
    want = [g for _, g in GROUPS]
    if sorted(groups) != sorted(want):
        raise InvalidSpaceDefinition(
            "format.native",
            f"ofa_subnet needs the gene groups "
            f"{', '.join(want)}; this space has {', '.join(groups)}",
        )
    for group, cols in groups.items():
        values = {tuple(sp._values[j]) for j in cols}
        if len(values) != 1 or not all(float(v).is_integer() for v in next(iter(values))):
            raise InvalidSpaceDefinition(
                "format.native",
                f"ofa_subnet needs the same integer choices for every '{group}' gene",
            )


@functools.lru_cache(maxsize=16)
def layout(space: SearchSpace) -> tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]:
    """(subnet key, gene columns, allowed values) per key ``r``, ``d``, ``ks``, ``e``."""
    groups = dict(space._groups())  # type: ignore[attr-defined]
    return tuple(
        (key, tuple(groups[g]), tuple(int(v) for v in space._values[groups[g][0]]))
        for key, g in GROUPS
    )


def _resolution(subnet: Mapping[str, Any], i: int, gene: int) -> Any:
    keys = [k for k in ("r", "image_size", "resolution") if k in subnet]
    if len(keys) != 1:
        what = "several of" if keys else "one of"
        raise InvalidArchitecture(
            f"OFA subnet needs {what} 'r' / 'image_size' (e.g. \"r\": [224]), got keys "
            f"{sorted(subnet)}",
            index=i,
            gene=gene,
        )
    r = subnet[keys[0]]
    if isinstance(r, list | tuple):
        if len(r) != 1:
            raise InvalidArchitecture(
                f"OFA subnet '{keys[0]}' must be one resolution, got {list(r)}", index=i, gene=gene
            )
        r = r[0]
    return r


def genes_of_ofa_subnets(space: SearchSpace, subnets: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The ``ofa`` library's subnet dicts -> canonical genes (vectorised)."""
    fast = _fast(space, subnets)
    if fast is not None:
        return fast
    lay = layout(space)
    n = len(subnets)
    raw = np.empty((n, space.num_genes), dtype=object)
    for i, sub in enumerate(subnets):
        if not isinstance(sub, Mapping):
            raise InvalidArchitecture(
                f"expected an OFA subnet dict, got {type(sub).__name__}", index=i
            )
        raw[i, lay[0][1][0]] = _resolution(sub, i, lay[0][1][0])
        for key, cols, _ in lay[1:]:
            count = len(cols)
            values = sub.get(key)
            if not isinstance(values, list | tuple | np.ndarray) or len(values) != count:
                got = "nothing" if values is None else repr(values)
                raise InvalidArchitecture(
                    f"OFA subnet '{key}' must be a list of {count} values, got {got}",
                    index=i,
                    gene=cols[0],
                )
            raw[i, list(cols)] = list(values)
    out = np.empty((n, space.num_genes), dtype=GENE_DTYPE)
    for key, cols, allowed in lay:
        count = len(cols)
        lut = {int(v): k for k, v in enumerate(allowed)}
        block = raw[:, list(cols)].reshape(-1)
        codes = np.fromiter(
            (lut.get(v, -1) if isinstance(v, int | np.integer) else -1 for v in block),
            dtype=np.int64,
            count=block.size,
        )
        if (codes < 0).any():
            pos = int(np.argmax(codes < 0))
            i, j = divmod(pos, count)
            where = key if count == 1 else f"{key}[{j}]"
            raise InvalidArchitecture(
                f"OFA subnet '{where}' = {block[pos]!r} not allowed "
                f"(allowed: {', '.join(map(str, allowed))})",
                index=i,
                gene=cols[j],
            )
        out[:, list(cols)] = codes.reshape(n, count)
    return space.canonicalize(out)


def _fast(space: SearchSpace, subnets: Sequence[Any]) -> np.ndarray | None:
    """Vectorised path for well-formed dicts (``r`` or ``image_size``); None otherwise."""
    n = len(subnets)
    if n == 0 or not all(type(sub) is dict for sub in subnets):
        return None
    lay = layout(space)
    key = "r" if "r" in subnets[0] else "image_size"
    other = {"r", "image_size", "resolution"} - {key}
    if any(not other.isdisjoint(sub) for sub in subnets):
        return None
    arrays = []
    try:
        for k, cols, _ in ((key, *lay[0][1:]), *lay[1:]):
            count = len(cols)
            lists = [sub[k] for sub in subnets]
            if k == key:
                lists = [v if type(v) is list else [v] for v in lists]
            if set(map(len, lists)) != {count}:
                return None
            types = set(map(type, itertools.chain.from_iterable(lists)))
            if not all(issubclass(t, int | np.integer) and t is not bool for t in types):
                return None  # fromiter would cast 3.5 / "3" / True silently
            flat = np.fromiter(
                itertools.chain.from_iterable(lists), dtype=np.int64, count=n * count
            )
            arrays.append(flat.reshape(n, count))
    except (KeyError, ValueError, TypeError):
        return None  # missing keys, non-integers, ...: the per-dict path names the error
    out = np.empty((n, space.num_genes), dtype=GENE_DTYPE)
    for arr, (_, cols, allowed) in zip(arrays, lay, strict=True):
        if arr.shape != (n, len(cols)):
            return None
        lut = np.full(max(allowed) + 1, -1, dtype=np.int64)
        lut[list(allowed)] = np.arange(len(allowed))
        vals = arr.astype(np.int64)
        codes = lut[np.clip(vals, 0, len(lut) - 1)]
        if ((vals < 0) | (vals >= len(lut)) | (codes < 0)).any():
            return None
        out[:, list(cols)] = codes
    return space.canonicalize(out)


def ofa_subnets_of_genes(space: SearchSpace, genes: np.ndarray) -> list[dict[str, Any]]:
    """Canonical genes -> ``ofa`` subnet dicts (inactive blocks carry the first choice)."""
    g = space.validate(genes).astype(np.int64)
    values = {
        key: np.asarray(allowed)[g[:, list(cols)]].tolist() for key, cols, allowed in layout(space)
    }
    return [
        {"ks": values["ks"][i], "e": values["e"][i], "d": values["d"][i], "r": values["r"][i]}
        for i in range(len(g))
    ]
