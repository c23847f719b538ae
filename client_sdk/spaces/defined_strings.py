"""String forms of a ``DefinedSpace`` (``format`` of the definition): parse and format.

A gene *group* is ``resolution``, ``width``, ``depth`` or a choice key (``op``, ``kernel``,
...); its genes are written as one value each, joined by '-'. ``keyed``: one
``key=v-v-..`` token per group (``format.keys`` renames the keys); ``joined``: the groups'
values without keys, separated by spaces (a single group: the values joined by '-', e.g.
FBNet's 22 op names). The vectorised parser of canonical ``joined`` strings is
``spaces.string_parse._parse_joined``.
"""

from __future__ import annotations

import functools

import numpy as np

from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces.base import GENE_DTYPE, lookup_choice


class DefinedStrings:
    """Mixin of ``DefinedSpace``: gene groups and the string form."""

    def _groups(self) -> list[tuple[str, list[int]]]:
        """(group, its gene columns) in gene order."""
        groups: list[tuple[str, list[int]]] = []
        if self._res_gene is not None:
            groups.append(("resolution", [self._res_gene]))
        if self._width_gene is not None:
            groups.append(("width", [self._width_gene]))
        if self._depth_genes:
            groups.append(("depth", list(self._depth_genes.values())))
        by_key: dict[str, list[int]] = {}
        for pos in self.positions:
            for key, j in zip(pos.keys, pos.genes, strict=True):
                by_key.setdefault(key, []).append(j)
        groups += sorted(by_key.items(), key=lambda kv: kv[1][0])
        return groups

    @functools.cached_property
    def _string_groups(self) -> list[tuple[str, list[int]]]:
        return self._groups()

    @functools.cached_property
    def _string_keys(self) -> dict[str, str]:
        """Group -> its key in the keyed string form (``format.keys``, else the group)."""
        keys = self.definition.format_keys
        return {g: keys.get(g, g) for g, _ in self._string_groups}

    @functools.cached_property
    def _template(self) -> str:
        """The keyed form in words, for errors: ``r=<resolution> d=<5 depth values> ...``."""
        keys = self._string_keys
        return " ".join(f"{keys[g]}=<{len(cols)} {g} values>" if len(cols) > 1 else
                        f"{keys[g]}=<{g}>" for g, cols in self._string_groups)

    def format(self, genes: np.ndarray) -> str:
        parts = []
        keys = self._string_keys
        for key, cols in self._string_groups:
            vals = "-".join(self.choices[j][int(genes[j])] for j in cols)
            parts.append(vals if self.definition.format == "joined" else f"{keys[key]}={vals}")
        return " ".join(parts)

    def format_many(self, genes: np.ndarray) -> list[str]:
        """``format`` of a batch: labels gathered per gene column, joined per row."""
        genes = self.validate(genes)
        if len(genes) == 0:
            return []
        keys, joined = self._string_keys, self.definition.format == "joined"
        parts = []
        for key, cols in self._string_groups:
            labels = [np.asarray(self.choices[j], dtype=object).take(genes[:, j]) for j in cols]
            vals = ["-".join(t) for t in zip(*labels, strict=True)]
            parts.append(vals if joined else [f"{keys[key]}={v}" for v in vals])
        return parts[0] if len(parts) == 1 else [" ".join(t) for t in zip(*parts, strict=True)]

    def _given(self, arch: str, index: int) -> dict[str, str]:
        """Group -> its '-'-joined values in ``arch``."""
        groups = self._string_groups
        if self.definition.format == "joined":
            if len(groups) == 1:  # one group: the whole string (FBNet's op names)
                return {groups[0][0]: arch.strip()}
            tokens = arch.split()
            if len(tokens) != len(groups):
                raise InvalidArchitecture(f"expected {len(groups)} '-'-joined group(s), got "
                                          f"{len(tokens)}", index=index)
            return dict(zip([k for k, _ in groups], tokens, strict=True))
        given: dict[str, str] = {}
        external = self._string_keys
        internal = {k: g for g, k in external.items()}
        for tok in arch.split():
            key, eq, vals = tok.partition("=")
            group = internal.get(key)
            if not eq or group is None or group in given:
                raise InvalidArchitecture(f"expected '{self._template}' (each key once), "
                                          f"bad part '{tok[:40]}'", index=index)
            given[group] = vals
        missing = sorted(external[k] for k, _ in groups if k not in given)
        if missing:
            raise InvalidArchitecture(f"missing {missing} in '{self._template}'", index=index)
        return given

    def parse(self, arch: str, index: int = 0) -> np.ndarray:
        if not isinstance(arch, str):
            raise InvalidArchitecture(f"expected a string, got {type(arch).__name__}", index=index)
        given = self._given(arch, index)
        joined = self.definition.format == "joined"
        out = np.zeros(self.num_genes, dtype=GENE_DTYPE)
        for key, cols in self._string_groups:
            vals = given[key].split("-")
            if len(vals) != len(cols):
                if joined:
                    what = "ops" if key == "op" else f"'{key}' values"
                    msg = f"expected {len(cols)} {what} joined by '-', got {len(vals)}"
                else:
                    msg = (f"expected {len(cols)} {key} values joined by '-' in "
                           f"'{self._string_keys[key]}=', got {len(vals)}")
                whole = joined and len(self._string_groups) == 1  # the string, not a gene
                raise InvalidArchitecture(msg, index=index, gene=None if whole else cols[0])
            what = "operation" if key == "op" else key  # the gene: ``err.gene``
            for j, v in zip(cols, vals, strict=True):
                out[j] = lookup_choice(v, self.choices[j], index, j, what)
        return self.canonicalize(out[None, :])[0]
