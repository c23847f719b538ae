"""The search-space interface: integer genes, string forms, validation, features, tables.

Genes are ``np.ndarray`` of dtype ``int16`` and shape ``(n, space.num_genes)``; gene ``j``
takes values ``0 .. cardinalities[j] - 1``. Everything here is vectorised over the batch
and knows nothing of gRPC.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from client_sdk.errors import InvalidArchitecture

GENE_DTYPE = np.int16
_MAX_CODE_SPACE = 1 << 20  # direct code -> row lookup array for spaces up to this size


@dataclass(frozen=True)
class Table:
    """A space's bundled measurements: row ``i`` is architecture ``genes[i]``."""

    genes: np.ndarray  # (n, g) int16, canonical
    index: np.ndarray  # (n,) int64, the table's own (official) architecture index
    devices: tuple[str, ...]
    latency_ms: np.ndarray  # (n, d) float64
    accuracy: dict[str, np.ndarray]  # metric name -> (n,) float64 (percent); may be empty

    def device_column(self, device: str) -> np.ndarray:
        return self.latency_ms[:, self.devices.index(device)]


class SearchSpace(ABC):
    """A NAS search space with a bundled latency table."""

    name: str
    description: str
    gene_names: tuple[str, ...]
    cardinalities: np.ndarray  # (g,) int64
    #: per-gene choice labels, used by the string form and error messages
    choices: tuple[tuple[str, ...], ...]

    @property
    def num_genes(self) -> int:
        return len(self.gene_names)

    @property
    def ordinal_genes(self) -> np.ndarray:
        """(g,) bool: genes whose choices are ordered (a +-1 step is a small change; the
        search's mutation steps them). None by default; a space from a definition marks the
        genes of its numeric choices (``DefinedSpace.ordinal_genes``)."""
        return np.zeros(self.num_genes, dtype=bool)

    @property
    def space_size(self) -> int:
        """Number of distinct gene vectors (before canonicalisation)."""
        return int(np.prod(self.cardinalities.astype(object)))

    @property
    def num_architectures(self) -> int:
        """Number of architectures in the bundled table."""
        return int(self.table.genes.shape[0])

    @functools.cached_property
    def table_covers_space(self) -> bool:
        """Every gene vector of the space is exactly one row of its measured table
        (NAS-Bench-201's 15,625 cells): a model may precompute its predictions for the whole
        space, and Rank may answer by table row."""
        if self.num_architectures != self.space_size:
            return False
        rows = self.table_rows(self.table.genes)
        return bool(rows.min() >= 0) and np.unique(rows).shape[0] == self.num_architectures

    # ---------------------------------------------------------------- strings
    @abstractmethod
    def parse(self, arch: str, index: int = 0) -> np.ndarray:
        """String form -> canonical gene vector ``(g,)``; raises ``InvalidArchitecture``."""

    @abstractmethod
    def format(self, genes: np.ndarray) -> str:
        """Gene vector ``(g,)`` -> canonical string form."""

    def parse_many(self, archs: Sequence[str]) -> np.ndarray:
        """Batch of strings -> genes: vectorised for canonical strings (``string_parse``), else
        one by one (lenient forms, precise errors)."""
        from client_sdk.spaces.string_parse import parse_many

        return parse_many(self, archs)

    def format_many(self, genes: np.ndarray) -> list[str]:
        genes = self.validate(genes)
        return [self.format(row) for row in genes]

    # ------------------------------------------------------------ validation
    def validate(self, genes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Check a batch of gene vectors and return them canonical, as ``int16``.

        Raises ``InvalidArchitecture`` naming the first bad architecture (batch index),
        the gene position and the allowed range.
        """
        try:
            arr = np.asarray(genes)
        except ValueError:  # ragged batch: name the first row of the wrong length
            raise self._ragged_error(genes) from None
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, self.num_genes)
        if arr.ndim != 2 or arr.shape[1] != self.num_genes:
            raise InvalidArchitecture(
                f"expected gene vectors of length {self.num_genes} for space '{self.name}', "
                f"got shape {arr.shape}",
                index=0 if arr.ndim == 2 and arr.shape[0] > 0 else None,
            )
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind != "f":
                raise InvalidArchitecture(f"genes must be integers, got dtype {arr.dtype}")
            nonint = ~np.isfinite(arr) | (arr != np.round(arr))
            if nonint.any():
                i, j = (int(v) for v in np.argwhere(nonint)[0])
                name = self.gene_names[j]
                raise self._gene_error(
                    i, j, f"value {arr[i, j]!r} of gene '{name}' is not an integer"
                )
        bad = (arr < 0) | (arr >= self.cardinalities[None, :])
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            name = self.gene_names[j]
            raise self._gene_error(i, j, f"value {int(arr[i, j])} out of range for gene '{name}'")
        return self.canonicalize(arr.astype(GENE_DTYPE, copy=False))

    def _gene_error(self, index: int, gene: int, problem: str) -> InvalidArchitecture:
        """``InvalidArchitecture`` of gene ``gene`` of architecture ``index``: ``problem``, then
        the gene's allowed values."""
        allowed = f"0..{int(self.cardinalities[gene]) - 1}: {', '.join(self.choices[gene])}"
        return InvalidArchitecture(f"{problem} (allowed {allowed})", index=index, gene=gene)

    def _ragged_error(self, genes: Sequence) -> InvalidArchitecture:
        for i, row in enumerate(genes):
            try:
                shape = np.shape(row)
            except ValueError:
                shape = None
            if shape != (self.num_genes,):
                got = "a ragged row" if shape is None else f"shape {shape}"
                return InvalidArchitecture(
                    f"expected a gene vector of length {self.num_genes} for space "
                    f"'{self.name}', got {got}",
                    index=i,
                )
        return InvalidArchitecture(f"gene vectors must form an (n, {self.num_genes}) array")

    def canonicalize(self, genes: np.ndarray) -> np.ndarray:
        """Map equivalent encodings to one representative (identity by default)."""
        return genes

    # -------------------------------------------------------------- features
    def one_hot(self, genes: np.ndarray) -> np.ndarray:
        """``(n, sum(cardinalities))`` float32 one-hot encoding, built by index lookups."""
        n = genes.shape[0]
        offsets = self._one_hot_offsets
        out = np.zeros((n, int(self.cardinalities.sum())), dtype=np.float32)
        cols = genes.astype(np.int64) + offsets[None, :]
        out[np.arange(n)[:, None], cols] = 1.0
        return out

    @functools.cached_property
    def _one_hot_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]]).astype(np.int64)

    def features(self, genes: np.ndarray) -> np.ndarray:
        """Model features for a batch: one-hot genes + log FLOPs + log params (float32)."""
        extra = np.stack([np.log1p(self.flops(genes)), np.log1p(self.params(genes))], axis=1)
        return np.concatenate([self.one_hot(genes), extra.astype(np.float32)], axis=1)

    @abstractmethod
    def flops(self, genes: np.ndarray) -> np.ndarray:
        """Analytic multiply-accumulate count per architecture, ``(n,)`` float64."""

    @abstractmethod
    def params(self, genes: np.ndarray) -> np.ndarray:
        """Analytic parameter count per architecture, ``(n,)`` float64."""

    # -------------------------------------------------------------- sampling
    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` uniformly random canonical gene vectors."""
        rng = np.random.default_rng(rng)
        raw = rng.integers(0, self.cardinalities[None, :], size=(n, self.num_genes))
        return self.canonicalize(raw.astype(GENE_DTYPE))

    # ----------------------------------------------------------------- table
    @functools.cached_property
    def table(self) -> Table:
        return self._load_table()

    @abstractmethod
    def _load_table(self) -> Table: ...

    @functools.cached_property
    def _row_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        keys = row_keys(self.table.genes)
        order = np.argsort(keys, kind="stable")
        return keys[order], order

    @functools.cached_property
    def _row_codes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Mixed-radix code -> table row (``-1``: not in the table), for small spaces only.

        ``(radix (g,) int32, lookup (space_size,) int64)`` or None when the space has more
        than ``_MAX_CODE_SPACE`` gene vectors (then ``table_rows`` uses the sorted keys).
        """
        if self.space_size > _MAX_CODE_SPACE:
            return None
        card = self.cardinalities.astype(np.int64)
        radix = np.concatenate([np.cumprod(card[::-1])[::-1][1:], [1]]).astype(np.int64)
        codes = self.table.genes.astype(np.int64) @ radix
        lookup = np.full(self.space_size, -1, dtype=np.int64)
        uniq, first = np.unique(codes, return_index=True)  # duplicates: the first row wins
        lookup[uniq] = first
        return radix.astype(np.int32), lookup

    @functools.cached_property
    def _min_cardinality(self) -> int:
        return int(self.cardinalities.min())

    def table_rows(self, genes: np.ndarray) -> np.ndarray:
        """Row of each (canonical) gene vector in the bundled table, ``-1`` if absent."""
        coded = self._row_codes
        g = np.asarray(genes)
        if (
            coded is not None
            and g.ndim == 2
            and g.shape[1] == self.num_genes
            and g.dtype.kind in "iu"
            and g.shape[0] > 0
            and g.min() >= 0
            and (g.max() < self._min_cardinality or bool((g < self.cardinalities).all()))
        ):
            radix, lookup = coded  # codes < space_size <= _MAX_CODE_SPACE < 2**53
            # one BLAS product: exact in float64 for codes this small
            return lookup[(g @ radix.astype(np.float64)).astype(np.intp)]
        return self._table_rows_by_key(genes)

    def _table_rows_by_key(self, genes: np.ndarray) -> np.ndarray:
        sorted_keys, order = self._row_lookup
        keys = row_keys(np.ascontiguousarray(genes, dtype=GENE_DTYPE))
        pos = np.searchsorted(sorted_keys, keys)
        pos = np.minimum(pos, len(sorted_keys) - 1)
        found = sorted_keys[pos] == keys
        return np.where(found, order[pos], -1).astype(np.int64)

    def genes_of_index(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """Gene vectors of official table indices (``NotFound``-free: raises KeyError)."""
        index = np.asarray(index, dtype=np.int64)
        order = np.argsort(self.table.index)
        pos = np.searchsorted(self.table.index[order], index)
        pos = np.minimum(pos, len(order) - 1)
        rows = order[pos]
        if np.any(self.table.index[rows] != index):
            missing = index[self.table.index[rows] != index]
            raise KeyError(f"table indices not in '{self.name}': {missing[:5].tolist()}")
        return self.table.genes[rows]

    def rows_of_index(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        return self.table_rows(self.genes_of_index(index))

    def info(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "num_genes": self.num_genes,
            "cardinalities": self.cardinalities.tolist(),
            "gene_names": list(self.gene_names),
            "num_architectures": self.num_architectures,
            "space_size": self.space_size,
            "devices": list(self.table.devices),
        }


def row_keys(genes: np.ndarray) -> np.ndarray:
    """Byte-string key per row (``np.void``), comparable and sortable."""
    g = np.ascontiguousarray(genes, dtype=GENE_DTYPE)
    return g.view(np.dtype((np.void, g.dtype.itemsize * g.shape[1]))).ravel()


def lookup_choice(
    value: str, allowed: Sequence[str], index: int, gene: int, what: str
) -> int:
    """Position of ``value`` in ``allowed`` or a precise ``InvalidArchitecture``."""
    try:
        return allowed.index(value)
    except ValueError:
        raise InvalidArchitecture(
            f"unknown {what} '{value}' (allowed: {', '.join(allowed)})", index=index, gene=gene
        ) from None
