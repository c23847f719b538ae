"""``oracle``: the user-side command line (tables by default, ``--json`` everywhere).

One module per command group (``spaces``, ``device``, ``cache``, ``ranking``, ``search``), the
parser in ``_parser``, shared helpers in ``_common`` and ``_measurements``; ``main`` is the
console script (``oracle = "client_sdk.cli:main"``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

from client_sdk._extras import MissingExtra
from client_sdk.cli._common import _client
from client_sdk.cli._measurements import EXPORT_KIND, _export_manifest
from client_sdk.cli._parser import _parser
from client_sdk.cli.device import cmd_device
from client_sdk.cli.ranking import cmd_compare, cmd_rank, cmd_suggest
from client_sdk.cli.search import cmd_search
from client_sdk.cli.spaces import cmd_devices, cmd_space, cmd_spaces
from client_sdk.client import OracleClient
from client_sdk.errors import OracleClientError

__all__ = ["COMMANDS", "EXPORT_KIND", "main"]


COMMANDS = {
    "spaces": cmd_spaces,
    "space": cmd_space,
    "devices": cmd_devices,
    "device": cmd_device,
    "rank": cmd_rank,
    "suggest": cmd_suggest,
    "compare": cmd_compare,
    "search": cmd_search,
}


def _learn_space(client: OracleClient, space: str) -> None:
    """A space registered on the server from a definition but unknown here: fetch its
    definition so strings parse, genes validate and torch builds locally (best effort: the
    command reports an unknown space itself)."""
    from client_sdk._requests import local_space

    name = space.partition("/")[0]
    if name and local_space(name) is None:
        with contextlib.suppress(OracleClientError):
            client.get_space(name)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "device":
        args.name = args.name or args.name_pos
        if args.action == "cache":  # local: the ONNX export cache, no server
            try:  # (imported here: the [measure] extra is not needed for anything else)
                from client_sdk.cli.cache import cmd_cache

                return cmd_cache(args)
            except MissingExtra as exc:
                print(f"oracle device cache: {exc}", file=sys.stderr)
                return 2
        if not args.name and args.action != "export":
            print("oracle device: give a device name", file=sys.stderr)
            return 2
        if args.space is None:  # SPACE/NAME's, the export's for its CSV, else NAS-Bench-201
            manifest = _export_manifest(args.csv) if args.csv else None
            prefix = (args.name or "").partition("/")[0] if "/" in (args.name or "") else None
            args.space = prefix or (manifest["space"] if manifest else "nasbench201")
    try:
        with _client(args) as client:
            _learn_space(client, getattr(args, "space", "") or "")
            COMMANDS[args.command](args, client)
    except OracleClientError as exc:
        print(f"oracle: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 1
    except MissingExtra as exc:
        print(f"oracle {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0
