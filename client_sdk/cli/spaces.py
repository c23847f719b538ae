"""``oracle spaces``, ``oracle space register|show``, ``oracle devices``."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from client_sdk.cli._common import DEVICE_COLUMNS, _emit, _table
from client_sdk.client import OracleClient


def cmd_spaces(args: argparse.Namespace, c: OracleClient) -> None:
    spaces = c.list_spaces()
    rows = [
        {
            "name": s.name,
            "genes": s.num_genes,
            "table_archs": s.num_architectures,
            "devices": len(s.table_devices),
            "description": s.description,
        }
        for s in spaces
    ]
    _emit(args, spaces, _table(rows, ("name", "genes", "table_archs", "devices", "description")))


def cmd_space(args: argparse.Namespace, c: OracleClient) -> None:
    """``oracle space register --file space.yaml`` / ``oracle space show NAME``."""
    if args.action == "register":
        if not args.file:
            raise SystemExit("oracle space register: give --file space.yaml (YAML or JSON)")
        try:
            text = Path(args.file).read_text()
        except OSError as exc:
            raise SystemExit(f"oracle space register: cannot read {args.file}: {exc}") from None
        info = c.register_space(text)
    else:
        if not args.name:
            raise SystemExit("oracle space show: give the space name")
        info = c.get_space(args.name)
    row = {
        "name": info.name,
        "genes": info.num_genes,
        "space_size": info.space_size,
        "owner": info.owner or "-",
        "example": info.example_arch,
    }
    _emit(args, info, _table([row], ("name", "genes", "space_size", "owner", "example")))


def cmd_devices(args: argparse.Namespace, c: OracleClient) -> None:
    devices = c.list_devices(args.space or "")
    rows = [asdict(d) for d in devices]
    _emit(args, devices, _table(rows, DEVICE_COLUMNS))
