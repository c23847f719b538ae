"""Bundled measured latency tables (see PROVENANCE.md) loaded into numpy once.

Each space has ``architectures.csv`` (``index`` + architecture columns) and
``latency_ms.csv`` (``index`` + one column per device). Files are checked against the
SHA-256 sums in ``checksums.json`` by the test-suite (``verify_checksums``); loading is
a plain-text parse (no pickles) that takes tens of milliseconds per space.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent
SPACES_WITH_TABLES = ("nasbench201", "fbnet", "ofa_mbv3")


@dataclass(frozen=True)
class RawTable:
    """One space's table as read from disk."""

    space: str
    index: np.ndarray  # (n,) int64, the table's own architecture index
    arch_columns: dict[str, list[str]]  # column name -> n strings
    devices: tuple[str, ...]
    latency_ms: np.ndarray  # (n, d) float64, row i = architecture index[i]


def _read_csv_text(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:] if line]
    return header, rows


def _read_float_matrix(path: Path) -> tuple[list[str], np.ndarray]:
    text = path.read_text()
    head, _, body = text.partition("\n")
    header = head.split(",")
    flat = np.array(body.replace("\n", ",").rstrip(",").split(","), dtype=np.float64)
    return header, flat.reshape(-1, len(header))


@functools.cache
def load_table(space: str) -> RawTable:
    """Load (once per process) the bundled table of ``space``."""
    if space not in SPACES_WITH_TABLES:
        raise KeyError(space)
    folder = DATA_DIR / space
    header, rows = _read_csv_text(folder / "architectures.csv")
    columns = {name: [r[j] for r in rows] for j, name in enumerate(header)}
    arch_index = np.array(columns.pop("index"), dtype=np.int64)
    lat_header, lat = _read_float_matrix(folder / "latency_ms.csv")
    lat_index = lat[:, 0].astype(np.int64)
    if not np.array_equal(lat_index, arch_index):
        order = np.argsort(lat_index)
        pos = np.searchsorted(lat_index[order], arch_index)
        lat = lat[order][pos]
    return RawTable(
        space=space,
        index=arch_index,
        arch_columns=columns,
        devices=tuple(lat_header[1:]),
        latency_ms=np.ascontiguousarray(lat[:, 1:]),
    )


def expected_checksums() -> dict[str, str]:
    return json.loads((DATA_DIR / "checksums.json").read_text())


def verify_checksums() -> dict[str, bool]:
    """SHA-256 of every bundled file against ``checksums.json``: {relative path: ok}."""
    out = {}
    for rel, digest in expected_checksums().items():
        actual = hashlib.sha256((DATA_DIR / rel).read_bytes()).hexdigest()
        out[rel] = actual == digest
    return out
