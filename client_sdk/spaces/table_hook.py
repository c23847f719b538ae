"""A definition's ``table``: the bundled measured table a bundled space is defined over.

``table: {name: fbnet, genes: {op: "block{p}"}}`` names a table under ``client_sdk/data``
(``data.load_table``) and maps every gene group of the space to its column(s): a template
with ``{p}`` is one column per gene, ``{p}`` replaced by the gene's number (the block
position of a choice key's gene, the stage of a ``depth`` gene); one without ``{p}`` is a
single column holding the group's values joined by '-' (OFA's ``depths``: ``2-3-4-2-3``).
Cells hold the choice labels of the space's string form (``DefinedSpace.choices``).
Instead of ``genes``, ``string: arch_str`` names one column holding each architecture's
string form (NAS-Bench-201's), parsed by the space. ``accuracy: {cifar10:
cifar10_test_acc, ...}`` names accuracy columns (percent) served beside the latencies.

Only a bundled space's own definition (``spaces/definitions/<name>.yaml``, unchanged) may
name a table: a user's definition measures its own architectures (``check_allowed``).
Errors are ``InvalidSpaceDefinition`` naming the path (``table.genes.op``), the column
and, for a bad cell, its row and value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from client_sdk.errors import InvalidArchitecture, InvalidSpaceDefinition
from client_sdk.spaces.base import GENE_DTYPE, Table

if TYPE_CHECKING:
    from client_sdk.spaces.language import Definition

_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}(\{p\}[A-Za-z0-9_]{0,16})?$")
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


@dataclass(frozen=True)
class TableHook:
    """``table:`` a bundled measured table, its gene group -> column template map (or the
    column of the architectures' strings) and its accuracy columns."""

    name: str
    genes: Mapping[str, str]  # group -> column name, ``{p}``: one column per gene
    string: str | None = None  # the column of the architectures' string forms
    accuracy: Mapping[str, str] = field(default_factory=dict)  # metric -> column


def parse(v: Any) -> TableHook:
    """``table``: ``{name: <bundled table>, genes: {group: column template}}`` or ``{name,
    string: <column>}``, with optional ``accuracy: {metric: column}``."""
    from client_sdk.data import SPACES_WITH_TABLES
    from client_sdk.spaces.language import GROUP_KEYS, _keys

    d = _keys(v, "table", {"name", "genes", "string", "accuracy"})
    if "name" not in d:
        raise InvalidSpaceDefinition("table.name", "is required")
    if d["name"] not in SPACES_WITH_TABLES:
        raise InvalidSpaceDefinition(
            "table.name",
            f"unknown bundled table {d['name']!r} (known: {', '.join(SPACES_WITH_TABLES)})",
        )
    if ("genes" in d) == ("string" in d):
        raise InvalidSpaceDefinition(
            "table.genes",
            "give the gene columns ('genes') or the string column ('string'), one of them",
        )
    string = d.get("string")
    if string is not None and (not isinstance(string, str) or not _PLAIN.match(string)):
        raise InvalidSpaceDefinition("table.string", f"must be a column name, got {string!r}")
    genes = _keys(d.get("genes", {}), "table.genes", set(GROUP_KEYS))
    if "genes" in d and not genes:
        raise InvalidSpaceDefinition("table.genes", "maps no gene group to a column")
    for group, column in genes.items():
        if not isinstance(column, str) or not _COLUMN.match(column):
            raise InvalidSpaceDefinition(
                f"table.genes.{group}",
                "must be a column name, "
                "optionally with one '{p}' (e.g. 'block{p}'), "
                f"got {column!r}",
            )
    accuracy = _keys(d.get("accuracy", {}), "table.accuracy", None)
    for metric, column in accuracy.items():
        if not _PLAIN.match(metric) or not isinstance(column, str) or not _PLAIN.match(column):
            raise InvalidSpaceDefinition(
                f"table.accuracy.{metric}",
                f"must map a metric name to a column name, got {column!r}",
            )
    return TableHook(d["name"], dict(genes), string, dict(accuracy))


def check(sp) -> None:  # sp: spaces.defined.DefinedSpace
    """Definition-time checks of ``table`` against the space's gene groups."""
    hook = sp.definition.table
    if hook is None or hook.string is not None:
        return
    groups = [g for g, _ in sp._groups()]
    for group in hook.genes:
        if group not in groups:
            raise InvalidSpaceDefinition(
                f"table.genes.{group}",
                f"the space has no '{group}' genes (its gene groups: {', '.join(groups)})",
            )
    missing = [g for g in groups if g not in hook.genes]
    if missing:
        raise InvalidSpaceDefinition(
            "table.genes", f"no column for the gene group(s) {', '.join(missing)}"
        )
    for group, cols in sp._groups():
        if "{p}" in hook.genes[group] and sp.gene_numbers[cols[0]] is None:
            raise InvalidSpaceDefinition(
                f"table.genes.{group}", f"'{group}' is one gene: its column takes no '{{p}}'"
            )


def check_allowed(d: Definition) -> None:
    """A definition naming a bundled table must be the bundled space's own definition."""
    if d.table is None:
        return
    from client_sdk.spaces import shipped_definition

    shipped = shipped_definition(d.name)
    if shipped is None or shipped.canonical_json() != d.canonical_json():
        raise InvalidSpaceDefinition(
            "table",
            "only a bundled space's own definition may "
            "name a bundled table; measure your space's "
            "architectures instead (oracle device onboard)",
        )


def _column(raw, name: str, path: str) -> list[str]:
    col = raw.arch_columns.get(name)
    if col is None:
        known = ", ".join(list(raw.arch_columns)[:8])
        raise InvalidSpaceDefinition(
            path,
            f"no column '{name}' in the bundled table '{raw.space}' (its columns: {known}, ...)",
        )
    return col


def _codes(
    values: np.ndarray, labels: tuple[str, ...], path: str, column: str, gene: str
) -> np.ndarray:
    """Choice index of every cell (vectorised over the distinct values)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    lut = {lab: k for k, lab in enumerate(labels)}
    codes = np.array([lut.get(str(u), -1) for u in uniq], dtype=np.int64)
    if (codes < 0).any():
        bad = str(uniq[int(np.argmax(codes < 0))])
        row = int(np.argmax(values == bad))
        raise InvalidSpaceDefinition(
            path,
            f"row {row} of column '{column}' holds {bad!r}, "
            f"not a choice of gene '{gene}' ({', '.join(labels)})",
        )
    return codes[inverse.reshape(-1)]


def load(sp) -> Table:  # sp: spaces.defined.DefinedSpace
    """The space's genes of the named table's rows (canonical) and its latencies."""
    from client_sdk.data import load_table

    hook = sp.definition.table
    assert hook is not None
    raw = load_table(hook.name)
    accuracy = {
        metric: np.array(_column(raw, col, f"table.accuracy.{metric}"), dtype=np.float64)
        for metric, col in hook.accuracy.items()
    }
    if hook.string is not None:
        return Table(
            _parsed(sp, raw, hook.string), raw.index, raw.devices, raw.latency_ms, accuracy
        )
    n = len(raw.index)
    genes = np.empty((n, sp.num_genes), dtype=GENE_DTYPE)
    for group, cols in sp._groups():
        template, path = hook.genes[group], f"table.genes.{group}"
        if "{p}" in template:
            for j in cols:
                name = template.replace("{p}", str(sp.gene_numbers[j]))
                values = np.asarray(_column(raw, name, path))
                genes[:, j] = _codes(values, sp.choices[j], path, name, sp.gene_names[j])
            continue
        split = [v.split("-") for v in _column(raw, template, path)]
        bad = next((i for i, v in enumerate(split) if len(v) != len(cols)), None)
        if bad is not None:
            raise InvalidSpaceDefinition(
                path,
                f"row {bad} of column '{template}' holds "
                f"{len(split[bad])} value(s); '{group}' has "
                f"{len(cols)} gene(s)",
            )
        cells = np.array(split, dtype=object).reshape(n, len(cols))
        for k, j in enumerate(cols):
            values = cells[:, k].astype(str)
            genes[:, j] = _codes(values, sp.choices[j], path, template, sp.gene_names[j])
    return Table(sp.canonicalize(genes), raw.index, raw.devices, raw.latency_ms, accuracy)


def _parsed(sp, raw, column: str) -> np.ndarray:
    """Genes of a column of string forms (the space's own parser: canonical)."""
    try:
        return sp.parse_many(_column(raw, column, "table.string"))
    except InvalidArchitecture as exc:
        raise InvalidSpaceDefinition(
            "table.string", f"row {exc.index} of column '{column}': {exc.detail}"
        ) from None
