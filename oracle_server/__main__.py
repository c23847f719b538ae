"""``oracle-server``: serve | evaluate | build-proxy | settings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from oracle_server import __version__
from oracle_server.settings import add_arguments, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oracle-server", description="Latency oracle server for hardware-aware NAS."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the gRPC server (embedded defaults)")
    add_arguments(serve)

    build = sub.add_parser(
        "build-proxy", help="train (or verify) the proxy artifacts into <data_dir>/cache and exit"
    )
    add_arguments(build)

    show = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    add_arguments(show)

    from oracle_server.evaluation import add_evaluate_arguments

    evaluate = sub.add_parser(
        "evaluate", help="reproduce the published protocols from the bundled data"
    )
    add_evaluate_arguments(evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from oracle_server.app import serve_forever

        try:
            settings = load_settings(args)
        except (ValueError, TypeError) as exc:
            print(f"oracle-server: invalid setting: {exc}", file=sys.stderr)
            return 2
        return serve_forever(settings)
    if args.command == "build-proxy":
        from oracle_server.app import load_models
        from oracle_server.logs import setup_logging

        settings = load_settings(args)
        setup_logging(settings.log_level, settings.log_format)
        models = load_models(settings)
        for name, model in models.items():
            print(f"{name}: proxy over {len(model.basis_devices)} basis devices ready in "
                  f"{settings.resolved_cache_dir}")
        return 0
    if args.command == "settings":
        print(json.dumps(load_settings(args).redacted(), indent=2))
        return 0
    if args.command == "evaluate":
        from oracle_server.evaluation import run_evaluate

        return run_evaluate(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
