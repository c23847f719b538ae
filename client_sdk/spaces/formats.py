"""The native architecture formats of NAS users (``to_genes``, ``from_genes``).

String batches are parsed by ``spaces.string_parse`` (``parse_many``, vectorised for
canonical strings; re-exported here with ``fast_parse_many``).

Native formats:

* ``nasbench201``: NATS-Bench / NAS-Bench-201 topology indices ``0..15624`` (the bundled
  table's ``index`` column is the official index) and the official ``|op~i|+...`` strings
  (this project's string form);
* ``fbnet`` (and any space): lists of per-gene choice names, FBNet's 22 operation names
  (``["k3_e1", "skip", ...]``);
* ``ofa_mbv3``: the ``ofa`` library's subnet dicts ``{"ks": [20], "e": [20], "d": [5],
  "r": [224]}`` (resolution also as ``"image_size"``, an int or a one-element list).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace
from client_sdk.spaces.string_parse import fast_parse_many, parse_many  # noqa: F401

# ---------------------------------------------------------------------- native formats
#: the native format names of ``to_genes(..., form=)`` / ``from_genes(..., form=)``
FORMS = ("genes", "string", "index", "ops", "ofa")


@functools.cache
def _index_lookup(space_name: str) -> tuple[np.ndarray, int, int]:
    """``(lut, lo, hi)``: table row of each index ``lo..hi`` (``-1``: not in the table)."""
    from client_sdk.spaces import get_space

    index = get_space(space_name).table.index
    lo, hi = int(index.min()), int(index.max())
    lut = np.full(hi - lo + 1, -1, dtype=np.int64)
    lut[index[::-1] - lo] = np.arange(len(index))[::-1]  # duplicates: the first row wins
    return lut, lo, hi


def genes_of_indices(space: SearchSpace, index: Any) -> np.ndarray:
    """Genes of table indices (NB201: NATS-Bench indices); errors name the batch index."""
    idx = np.asarray(index)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise InvalidArchitecture(f"architecture indices must be a 1-D integer batch, got {idx!r}")
    lut, lo, hi = _index_lookup(space.name)
    idx = idx.astype(np.int64, copy=False)
    rows = lut[np.clip(idx - lo, 0, hi - lo)]
    bad = (idx < lo) | (idx > hi) | (rows < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidArchitecture(
            f"index {int(idx[i])} is not an architecture of '{space.name}' "
            f"(table indices {lo}..{hi})",
            index=i,
        )
    return space.table.genes[rows]


def indices_of_genes(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """Table index of each gene vector (``-1`` where the architecture is not in the table)."""
    rows = space.table_rows(space.validate(genes))
    return np.where(rows >= 0, space.table.index[np.maximum(rows, 0)], -1).astype(np.int64)


def genes_of_op_lists(space: SearchSpace, archs: Sequence[Sequence[str]]) -> np.ndarray:
    """Lists of per-gene choice names (FBNet: 22 op names) -> genes, vectorised."""
    n, g = len(archs), space.num_genes
    bad_len = [i for i, a in enumerate(archs) if len(a) != g]
    if bad_len:
        i = bad_len[0]
        raise InvalidArchitecture(
            f"expected a list of {g} names ({space.gene_names[0]}..{space.gene_names[-1]}), "
            f"got {len(archs[i])}",
            index=i,
        )
    out = np.empty((n, g), dtype=GENE_DTYPE)
    if n == 0:
        return out
    flat = list(itertools.chain.from_iterable(archs))
    if all(c == space.choices[0] for c in space.choices) and all(
        type(v) is str for v in flat
    ):  # FBNet: one vocabulary, one dict lookup per name
        lut0 = {name: k for k, name in enumerate(space.choices[0])}
        codes = np.fromiter(map(lut0.get, flat, itertools.repeat(-1)), dtype=np.int64,
                            count=n * g)
    else:
        lut = {(j, c): k for j, names in enumerate(space.choices) for k, c in enumerate(names)}
        codes = np.fromiter(
            (lut.get(key, -1) if isinstance(key[1], str) else -1
             for key in zip(itertools.cycle(range(g)), flat)),
            dtype=np.int64, count=n * g,
        )
    if (codes < 0).any():
        pos = int(np.argmax(codes < 0))
        i, j = divmod(pos, g)
        raise InvalidArchitecture(
            f"unknown choice {flat[pos]!r} for gene '{space.gene_names[j]}' "
            f"(allowed: {', '.join(space.choices[j])})",
            index=i,
            gene=j,
        )
    out[:] = codes.reshape(n, g)
    return space.canonicalize(out)


def op_lists_of_genes(space: SearchSpace, genes: np.ndarray) -> list[list[str]]:
    genes = space.validate(genes)
    names = [np.asarray(c, dtype=object) for c in space.choices]
    cols = [names[j][genes[:, j]] for j in range(space.num_genes)]
    return [list(row) for row in zip(*cols, strict=True)] if len(genes) else []


_OFA_KEYS = {"ks": 20, "e": 20, "d": 5}


def _ofa_resolution(subnet: Mapping[str, Any], i: int) -> Any:
    keys = [k for k in ("r", "image_size", "resolution") if k in subnet]
    if len(keys) != 1:
        what = "several of" if keys else "one of"
        raise InvalidArchitecture(
            f"OFA subnet needs {what} 'r' / 'image_size' (e.g. \"r\": [224]), got keys "
            f"{sorted(subnet)}",
            index=i,
            gene=0,
        )
    r = subnet[keys[0]]
    if isinstance(r, list | tuple):
        if len(r) != 1:
            raise InvalidArchitecture(
                f"OFA subnet '{keys[0]}' must be one resolution, got {list(r)}", index=i, gene=0
            )
        r = r[0]
    return r


def genes_of_ofa_subnets(space: SearchSpace, subnets: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The ``ofa`` library's subnet dicts -> canonical OFA-MobileNetV3 genes (vectorised)."""
    from client_sdk.spaces.ofa_mbv3 import DEPTHS, EXPANDS, KERNELS, RESOLUTIONS

    fast = _ofa_fast(space, subnets)
    if fast is not None:
        return fast
    n = len(subnets)
    raw = np.empty((n, 46), dtype=object)
    for i, sub in enumerate(subnets):
        if not isinstance(sub, Mapping):
            raise InvalidArchitecture(
                f"expected an OFA subnet dict, got {type(sub).__name__}", index=i
            )
        raw[i, 0] = _ofa_resolution(sub, i)
        for key, start in (("d", 1), ("ks", 6), ("e", 26)):
            count = _OFA_KEYS[key]
            values = sub.get(key)
            if not isinstance(values, list | tuple | np.ndarray) or len(values) != count:
                got = "nothing" if values is None else repr(values)
                raise InvalidArchitecture(
                    f"OFA subnet '{key}' must be a list of {count} values, got {got}",
                    index=i,
                    gene=start,
                )
            raw[i, start : start + count] = list(values)
    out = np.empty((n, 46), dtype=GENE_DTYPE)
    for start, count, allowed, key in (
        (0, 1, RESOLUTIONS, "r"),
        (1, 5, DEPTHS, "d"),
        (6, 20, KERNELS, "ks"),
        (26, 20, EXPANDS, "e"),
    ):
        lut = {int(v): k for k, v in enumerate(allowed)}
        block = raw[:, start : start + count].reshape(-1)
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
                gene=start + j,
            )
        out[:, start : start + count] = codes.reshape(n, count)
    return space.canonicalize(out)


def _ofa_fast(space: SearchSpace, subnets: Sequence[Any]) -> np.ndarray | None:
    """Vectorised path for well-formed dicts (``r`` or ``image_size``); None otherwise."""
    from client_sdk.spaces.ofa_mbv3 import DEPTHS, EXPANDS, KERNELS, RESOLUTIONS

    n = len(subnets)
    if n == 0 or not all(type(sub) is dict for sub in subnets):
        return None
    key = "r" if "r" in subnets[0] else "image_size"
    other = {"r", "image_size", "resolution"} - {key}
    if any(not other.isdisjoint(sub) for sub in subnets):
        return None
    arrays = []
    try:
        for k, count in ((key, 1), ("d", 5), ("ks", 20), ("e", 20)):
            lists = [sub[k] for sub in subnets]
            if count == 1:
                lists = [v if type(v) is list else [v] for v in lists]
            if set(map(len, lists)) != {count}:
                return None
            types = set(map(type, itertools.chain.from_iterable(lists)))
            if not all(issubclass(t, int | np.integer) and t is not bool for t in types):
                return None  # fromiter would cast 3.5 / "3" / True silently
            flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64,
                               count=n * count)
            arrays.append(flat.reshape(n, count))
    except (KeyError, ValueError, TypeError):
        return None  # missing keys, non-integers, ...: the per-dict path names the error
    out = np.empty((n, 46), dtype=GENE_DTYPE)
    for arr, start, count, allowed in (
        (arrays[0], 0, 1, RESOLUTIONS), (arrays[1], 1, 5, DEPTHS),
        (arrays[2], 6, 20, KERNELS), (arrays[3], 26, 20, EXPANDS),
    ):
        if arr.shape != (n, count):
            return None
        lut = np.full(max(allowed) + 1, -1, dtype=np.int64)
        lut[list(allowed)] = np.arange(len(allowed))
        vals = arr.astype(np.int64)
        codes = lut[np.clip(vals, 0, len(lut) - 1)]
        if ((vals < 0) | (vals >= len(lut)) | (codes < 0)).any():
            return None
        out[:, start : start + count] = codes
    return space.canonicalize(out)


def ofa_subnets_of_genes(space: SearchSpace, genes: np.ndarray) -> list[dict[str, Any]]:
    """Canonical genes -> ``ofa`` subnet dicts (inactive blocks carry the first choice)."""
    from client_sdk.spaces.ofa_mbv3 import DEPTHS, EXPANDS, KERNELS, RESOLUTIONS

    g = space.validate(genes).astype(np.int64)
    r = np.asarray(RESOLUTIONS)[g[:, 0]].tolist()
    d = np.asarray(DEPTHS)[g[:, 1:6]].tolist()
    ks = np.asarray(KERNELS)[g[:, 6:26]].tolist()
    e = np.asarray(EXPANDS)[g[:, 26:46]].tolist()
    return [
        {"ks": ks[i], "e": e[i], "d": d[i], "r": [r[i]]} for i in range(len(g))
    ]


def detect_form(archs: Any) -> str:
    """'genes' | 'string' | 'index' | 'ops' | 'ofa' for a batch (from its first element)."""
    if isinstance(archs, np.ndarray):
        if archs.ndim == 1 and archs.dtype.kind in "iu":
            return "index"
        if archs.ndim == 1 and archs.dtype.kind in "UO" and archs.size:
            return detect_form(archs.tolist())
        return "genes"
    items = archs if isinstance(archs, Sequence) else list(archs)
    if len(items) == 0:
        return "genes"
    first = items[0]
    if isinstance(first, str):
        return "string"
    if isinstance(first, Mapping):
        return "ofa"
    if isinstance(first, int | np.integer) and not isinstance(first, bool):
        return "index"
    if isinstance(first, Sequence | np.ndarray) and len(first) and isinstance(first[0], str):
        return "ops"
    return "genes"


def to_genes(space: SearchSpace, archs: Any, form: str | None = None) -> np.ndarray:
    """Any accepted batch form -> validated canonical genes ``(n, g)`` int16.

    ``form`` is detected from the batch when ``None``: an integer matrix = genes, strings,
    a 1-D integer batch = table indices (NB201: NATS-Bench), lists of names = per-gene
    choice names (FBNet op lists), dicts = OFA subnets.
    """
    form = form or detect_form(archs)
    if form == "genes":
        return space.validate(archs)
    if form == "string":
        items = list(archs)
        bad = [i for i, a in enumerate(items) if not isinstance(a, str)]
        if bad:
            raise InvalidArchitecture(
                f"mixed batch: expected a string, got {type(items[bad[0]]).__name__}",
                index=bad[0],
            )
        return parse_many(space, items)
    if form == "index":
        arr = np.asarray(archs) if not isinstance(archs, np.ndarray) else archs
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            items = list(archs)
            bad = next(
                (i for i, a in enumerate(items)
                 if not isinstance(a, int | np.integer) or isinstance(a, bool)),
                0,
            )
            raise InvalidArchitecture(
                f"mixed batch: expected an integer index, got {items[bad]!r}", index=bad
            )
        return genes_of_indices(space, arr)
    if form == "ops":
        return genes_of_op_lists(space, list(archs))
    if form == "ofa":
        if space.name != "ofa_mbv3":
            raise InvalidArchitecture(
                f"OFA subnet dicts describe 'ofa_mbv3' architectures, not '{space.name}'",
                index=0,
            )
        return genes_of_ofa_subnets(space, list(archs))
    raise ValueError(f"unknown architecture form '{form}' (known: {', '.join(FORMS)})")


def from_genes(space: SearchSpace, genes: np.ndarray, form: str = "string") -> Any:
    """Canonical genes -> ``form`` (the inverse of ``to_genes``)."""
    genes = space.validate(genes)
    if form == "genes":
        return genes
    if form == "string":
        return space.format_many(genes)
    if form == "index":
        return indices_of_genes(space, genes)
    if form == "ops":
        return op_lists_of_genes(space, genes)
    if form == "ofa":
        if space.name != "ofa_mbv3":
            raise ValueError(f"OFA subnet dicts only exist for 'ofa_mbv3', not '{space.name}'")
        return ofa_subnets_of_genes(space, genes)
    raise ValueError(f"unknown architecture form '{form}' (known: {', '.join(FORMS)})")
