"""Shared by the ``oracle`` commands: the client from the global options, tables and
``--json`` output, architecture lists read from a file or stdin."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any, NoReturn

import numpy as np

from client_sdk.client import OracleClient


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return obj


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(_jsonable(data), indent=2) if args.json else text)


def _client(args: argparse.Namespace) -> OracleClient:
    kwargs: dict[str, Any] = {"timeout_s": args.timeout}
    if args.token:
        kwargs["token"] = args.token
    if args.tls_ca:
        kwargs["root_certificates"] = args.tls_ca
    if args.tls_cert:
        kwargs.update(client_cert=args.tls_cert, client_key=args.tls_key)
    targets = args.target.split(",")
    return OracleClient(targets if len(targets) > 1 else targets[0], **kwargs)


def _read_archs(path: str | None) -> list[str]:
    stream = sys.stdin if path in (None, "-") else open(path)  # noqa: SIM115
    with stream:
        return [line.strip() for line in stream if line.strip() and not line.startswith("#")]


def _native_archs(lines: list[str]) -> list[Any]:
    """Input lines in the users' native forms: integers are table indices (NB201:
    NATS-Bench), JSON lines are FBNet op-name lists / OFA subnet dicts; anything else is
    the space's string form. Decided on the first line, checked on every line."""
    if not lines:
        return lines
    first = lines[0]
    if first.isdigit():
        bad = next((i for i, line in enumerate(lines) if not line.isdigit()), None)
        if bad is not None:
            raise SystemExit(
                f"line {bad + 1}: expected an architecture index like line 1, "
                f"got '{lines[bad][:60]}'"
            )
        return [int(line) for line in lines]
    if first[0] in "[{":
        out = []
        for i, line in enumerate(lines):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"line {i + 1}: not valid JSON ({exc.msg})") from None
        return out
    return lines


def _fail(command: str, message: str) -> NoReturn:
    """A usage error: one line on stderr, exit code 2 (as argparse's)."""
    print(f"oracle {command}: {message}", file=sys.stderr)
    raise SystemExit(2)


def _options(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options ``names`` of ``args`` as keywords of the SDK call they feed (same names)."""
    return {name: getattr(args, name) for name in names}


def _progress(args: argparse.Namespace) -> bool | None:
    """Progress bars: never with --quiet/--json, else only on a terminal (None = auto)."""
    return False if (args.quiet or args.json) else None


DEVICE_COLUMNS = (
    "full_name",
    "source",
    "head_kind",
    "num_samples",
    "expected_spearman",
    "monotonicity",
    "quality",
)
