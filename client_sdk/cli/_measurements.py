"""Measurements CSVs (``oracle device register/add --csv``) checked row by row, the export's
``manifest.json`` beside them, and the device contract (``--contract`` or ``contract.json``).
``_csv_rows`` and ``_report_bad_rows`` also read ``register --models --csv`` (``networks``)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from client_sdk.errors import OracleClientError

#: ``manifest.json``'s kind (``client_sdk.measure.export.MANIFEST_KIND``, kept equal by a test)
EXPORT_KIND = "latency-oracle device export"
#: a refusal: prints ``message`` and exits (the code is the command's)
Fail = Callable[[str], NoReturn]


def _read_measurements(path: str, space: str | None = None, *, skip_bad_rows: bool = False) -> Any:
    """A measurements CSV (header ``arch,latency_ms``; other columns, e.g. ``file`` of
    ``oracle device export``, are ignored) -> ``(genes, latency_ms)`` of ``space``.

    Every row is checked before anything is sent: a blank, negative, zero, NaN, infinite or
    non-numeric latency, an architecture that is not one of ``space`` (named when it is one
    of another space), a duplicated architecture, and, with the export's ``manifest.json``
    beside the CSV, a file holding another architecture. A bad row stops the command, naming
    every bad line, unless ``skip_bad_rows`` (the skipped lines are listed on stderr).
    Archs all digits are table (NATS-Bench) indices. A space unknown here: the rows' strings
    go to the server as they are (it validates them)."""
    from client_sdk.spaces import get_space

    manifest = _export_manifest(path)
    if manifest is not None and space and manifest["space"] != space:
        raise SystemExit(
            f"{path}: these are architectures of '{manifest['space']}' (exported for it, "
            f"manifest.json), not '{space}': pass --space {manifest['space']} (or leave "
            "--space out)"
        )
    files = {e["file"]: e["arch"] for e in manifest["files"]} if manifest else {}
    _, rows = _csv_rows(path, _arch_header_problem, _exit)
    try:
        sp = get_space(space) if space else None
    except OracleClientError:
        sp = None
    indices = bool(rows) and all((r["arch"] or "").strip().isdigit() for _, r in rows)
    bad: list[str] = []
    seen: dict[Any, int] = {}
    keys, genes, values = [], [], []
    for line, row in rows:
        arch = (row["arch"] or "").strip()
        where = f"line {line} (arch '{arch[:60]}')"
        ms, problem = _latency(row["latency_ms"])
        key: Any = arch
        g = None
        if not arch:
            problem = problem or "the arch column is empty"
        elif sp is not None:
            try:
                g = sp.genes_of_index([int(arch)]) if indices else sp.parse(arch)[None]
                g = sp.validate(g)[0]
                key = g.tobytes()
            except (OracleClientError, KeyError, ValueError, IndexError) as exc:
                problem = _arch_problem(arch, sp.name, exc)
        if problem is None and g is not None and row.get("file") and files:
            file = row["file"].strip()
            if file not in files:
                problem = f"file '{file}' is not one of the exported files (manifest.json)"
            elif sp is not None and files[file] != sp.format(g):
                problem = f"file '{file}' holds the architecture '{files[file][:60]}'"
        if problem is None and key in seen:
            problem = f"duplicated row: the same architecture as line {seen[key]}"
        if problem is not None:
            bad.append(f"{where}: {problem}")
            continue
        seen[key] = line
        keys.append(int(arch) if indices and sp is None else arch)
        genes.append(g)
        values.append(ms)
    _report_bad_rows(path, bad, len(rows), len(values), skip_bad_rows, _exit)
    if sp is None:
        return dict(zip(keys, values, strict=True))
    return np.stack(genes), np.asarray(values, dtype=np.float64)


def _exit(message: str) -> NoReturn:
    """``device register/add --csv``'s refusal: the message on stderr, exit code 1."""
    raise SystemExit(message)


def _arch_header_problem(header: list[str]) -> str | None:
    if "arch" in header and "latency_ms" in header:
        return None
    other = [] if "latency_ms" in header else [c for c in header if c.startswith("latency")]
    hint = (
        f" (found '{other[0]}': the latency column is in milliseconds, named latency_ms)"
        if other
        else ""
    )
    return (
        "expected a CSV with header 'arch,latency_ms' (other columns such as 'file' are "
        f"allowed){hint}"
    )


def _csv_rows(
    path: str, header_problem: Callable[[list[str]], str | None], fail: Fail
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header (cells stripped) and the ``(line number, row)`` of a CSV; ``fail`` names an
    unreadable file or a header ``header_problem`` refuses (its reason)."""
    try:
        f = open(path, newline="")  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    with f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        problem = header_problem(header)
        if problem:
            fail(f"{path}: {problem}")
        reader.fieldnames = header
        return header, [(reader.line_num, row) for row in reader]


def _report_bad_rows(
    path: str,
    bad: list[str],
    total: int,
    good: int,
    skip_bad_rows: bool,
    fail: Fail,
    *,
    one_line: bool = False,
) -> None:
    """Stop (``fail``) when rows are bad, naming them, unless ``skip_bad_rows`` (they are
    listed on stderr); stop too when no good row is left. ``one_line``: the listing joined by
    '; ' (the first 5), else one line each (the first 50)."""
    if bad:
        sep, limit = ("; ", 5) if one_line else ("\n  ", 50)
        listing = sep.join(bad[:limit]) + (
            f"{sep}... {len(bad) - limit} more" if len(bad) > limit else ""
        )
        lead = " " if one_line else sep
        if not skip_bad_rows:
            fail(
                f"{path}: {len(bad)} bad row(s) of {total}; nothing registered (fix them, or "
                f"pass --skip-bad-rows to use the {good} good rows):{lead}{listing}"
            )
        print(f"{path}: skipped {len(bad)} bad row(s):{lead}{listing}", file=sys.stderr)
    if not good:
        fail(f"{path}: no measurements to register")


def _latency(text: str | None) -> tuple[float, str | None]:
    """A latency_ms cell -> ``(ms, None)``, or ``(nan, why it is unusable)``; a trailing
    'ms' is allowed, another unit is refused."""
    raw = (text or "").strip()
    if not raw:
        return math.nan, "latency_ms is blank (not measured?)"
    value = raw
    for unit in ("ms", "us", "µs", "ns", "s"):
        if raw.lower().endswith(unit) and _number(raw[: -len(unit)]) is not None:
            if unit != "ms":
                return math.nan, f"latency_ms '{raw}' is not in milliseconds (convert it)"
            value = raw[: -len(unit)]
            break
    v = _number(value)
    if v is None:
        return math.nan, f"latency_ms '{raw[:30]}' is not a number"
    if not math.isfinite(v):
        return math.nan, f"latency_ms is {raw} (not a finite number)"
    if v <= 0:
        return math.nan, f"latency_ms must be > 0, got {raw}"
    return v, None


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _arch_problem(arch: str, space: str, exc: Exception) -> str:
    """The error of an architecture not of ``space``, naming the space it is one of."""
    from client_sdk.spaces import get_space, list_spaces

    for other in list_spaces():
        if other == space:
            continue
        try:
            get_space(other).parse(arch)
        except Exception:  # any failure: not one of this space either
            continue
        return f"not an architecture of '{space}' (it is one of '{other}': wrong --space?)"
    msg = re.sub(r"^archs\[\d+\]: ", "", getattr(exc, "message", None) or str(exc))
    return f"unknown or invalid architecture of '{space}': {msg}"


def _export_manifest(csv_path: str) -> dict[str, Any] | None:
    """The ``manifest.json`` of ``oracle device export`` beside the CSV, if there is one."""
    path = Path(csv_path).parent / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == EXPORT_KIND else None


def _contract(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--contract`` (a JSON object or a JSON file), else the export's ``contract.json``
    beside ``--csv``; empty fields are dropped, unit 'ms' is 'ms/inference'."""
    from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb

    text, source = args.contract, "--contract"
    if text and not text.lstrip().startswith("{"):
        source = text
        try:
            text = Path(text).read_text()
        except OSError as exc:
            raise SystemExit(f"cannot read the contract {source}: {exc}") from None
    elif not text and args.csv and (Path(args.csv).parent / "contract.json").is_file():
        source = str(Path(args.csv).parent / "contract.json")
        text = Path(source).read_text()
        print(f"contract from {source}", file=sys.stderr)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{source}: the contract must be a JSON object")
    known = set(pb.DeviceContract.DESCRIPTOR.fields_by_name)
    unknown = sorted(set(data) - known)
    if unknown:
        raise SystemExit(f"{source}: unknown contract field(s) {unknown} (have {sorted(known)})")
    out = {k: v for k, v in data.items() if v not in (None, "")}
    if out.get("unit") == "ms":
        out["unit"] = "ms/inference"
    return out
