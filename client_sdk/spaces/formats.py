"""The native architecture formats of NAS users (``to_genes``, ``from_genes``).

String batches are parsed by ``spaces.string_parse`` (``parse_many``, vectorised for
canonical strings; re-exported here with ``fast_parse_many``).

Native formats (none keyed by a space's name):

* ``index`` (any space with a table): the table's own architecture indices — for
  NAS-Bench-201 the NATS-Bench topology indices ``0..15624`` (the bundled table's ``index``
  column is the official index; its strings ``|op~i|+...`` are the space's string form);
* ``ops`` (any space): lists of per-gene choice names, e.g. FBNet's 22 operation names
  (``["k3_e1", "skip", ...]``);
* ``ofa`` (a definition that opts in with ``format: {native: ofa_subnet}``, as
  OFA-MobileNetV3's does): the ``ofa`` library's subnet dicts ``{"ks": [20], "e": [20],
  "d": [5], "r": [224]}`` (``spaces.format_ofa``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace
from client_sdk.spaces.format_ofa import (
    genes_of_ofa_subnets,
    ofa_subnets_of_genes,
)
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


#: how a space accepts OFA subnet dicts, for errors
OPT_IN = "a definition opts in with format: {native: ofa_subnet}, as ofa_mbv3's does"


def natives(space: SearchSpace) -> tuple[str, ...]:
    """The native forms a space's definition opts in to (``format.native``)."""
    return getattr(getattr(space, "definition", None), "native", ())


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
        if "ofa_subnet" not in natives(space):
            raise InvalidArchitecture(f"space '{space.name}' takes no OFA subnet dicts ({OPT_IN})",
                                      index=0)
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
        if "ofa_subnet" not in natives(space):
            raise ValueError(f"space '{space.name}' has no OFA subnet dicts ({OPT_IN})")
        return ofa_subnets_of_genes(space, genes)
    raise ValueError(f"unknown architecture form '{form}' (known: {', '.join(FORMS)})")
