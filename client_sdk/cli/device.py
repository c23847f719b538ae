"""``oracle device show|register|add|delete|export|onboard`` (``register --models``:
``client_sdk.cli.networks``; ``cache``: ``client_sdk.cli.cache``, run without a server)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

from client_sdk.cli._common import DEVICE_COLUMNS, _emit, _fail, _options, _progress, _table
from client_sdk.cli._measurements import _contract, _read_measurements
from client_sdk.cli.cache import cap_mb, check_cache_options
from client_sdk.client import OracleClient
from client_sdk.types import DeviceInfo

#: ``oracle device onboard`` options passed to ``onboard`` under their own names.
ONBOARD_OPTIONS = (
    "samples", "threads", "batch_size", "device", "validate", "seed", "repeats", "rounds",
    "statistic", "target_spearman", "max_samples", "round_size", "retest", "retest_threshold",
    "session_check", "register_retest", "runtime", "onnx_cache", "pin_cpus", "flush_denormal",
)  # fmt: skip


def warn_quality(d: DeviceInfo) -> None:
    """A plain warning on stderr when the device's predictions are low-confidence."""
    if d.quality != "low":
        return
    lines = [
        f"warning: {d.full_name} is LOW-CONFIDENCE: expected Spearman "
        f"{d.expected_spearman:.3f} (FLOPs ranking {d.flops_spearman:.3f}) from "
        f"{d.num_samples} measurements; about {d.advised_samples} are advised "
        f"(`oracle device add` more)."
    ]
    lines += [f"  - {w}" for w in d.warnings]
    print("\n".join(lines), file=sys.stderr)


def cmd_device(args: argparse.Namespace, c: OracleClient) -> None:
    check_cache_options(args)
    if args.action == "export" or (args.action == "onboard" and args.runtime == "onnxruntime"):
        # a bad --onnx-cache-max-mb or $LATENCY_ORACLE_ONNX_CACHE_MAX_MB fails before any work
        cap = cap_mb(args.onnx_cache_max_mb, "--onnx-cache-max-mb", f"device {args.action}")
        if args.action == "onboard" and args.onnx_cache_max_mb is not None:
            from client_sdk.measure.onnx_cache import ENV_MAX_MB  # the [measure] extra

            os.environ[ENV_MAX_MB] = str(cap)  # read by the harness's OrtBuilder
    if args.action == "show":
        d = c.get_device(args.name, args.space or "")
        text = "\n".join(f"{k:18} {v}" for k, v in asdict(d).items())
        _emit(args, d, text)
    elif args.models:
        if args.action != "register":
            _fail(f"device {args.action}", "--models is for device register")
        from client_sdk.cli.networks import cmd_register_models

        cmd_register_models(args, c)
    elif args.measure is not None or args.names:
        _fail(f"device {args.action}", "--measure/--names measure the networks of --models FILE")
    elif args.action == "register":
        if not args.csv:
            raise SystemExit(
                "device register needs --csv FILE (header arch,latency_ms), or --models FILE "
                "with --measure N or --csv FILE (header name,latency_ms)"
            )
        contract = _contract(args)
        measurements = _read_measurements(args.csv, args.space, skip_bad_rows=args.skip_bad_rows)
        d = c.register_device(args.name, args.space, measurements, contract)
        _emit(args, d, _table([asdict(d)], DEVICE_COLUMNS))
        warn_quality(d)
    elif args.action == "add":
        if not args.csv:
            raise SystemExit("device add needs --csv FILE (header arch,latency_ms)")
        space = args.name.partition("/")[0] if "/" in args.name else args.space
        measurements = _read_measurements(args.csv, space, skip_bad_rows=args.skip_bad_rows)
        d = c.add_measurements(args.name, measurements, args.space or "")
        _emit(args, d, _table([asdict(d)], DEVICE_COLUMNS))
        warn_quality(d)
    elif args.action == "delete":
        deleted = c.delete_device(args.name, args.space or "")
        _emit(args, {"deleted": deleted}, "deleted" if deleted else "no such device")
    elif args.action == "export":
        from client_sdk.measure.export import export_kit

        if not args.out:
            raise SystemExit("device export needs --out DIR")
        try:
            manifest = export_kit(
                c,
                args.space,
                args.out,
                samples=args.samples,
                retest=20 if args.retest is None else args.retest,
                seed=args.seed,
                batch_size=args.batch_size,
                fmt=args.format,
                onnx_cache=args.onnx_cache,
                onnx_cache_max_mb=args.onnx_cache_max_mb,
                log=lambda msg: print(msg, file=sys.stderr),
            )
        except (FileExistsError, ValueError) as exc:
            raise SystemExit(f"oracle device export: {exc}") from None
        rows = [
            {"file": e["file"], "kind": e["kind"], "arch": e["arch"]} for e in manifest["files"]
        ]
        _emit(
            args,
            manifest,
            _table(rows, ("file", "kind", "arch")) + "\n\nmeasure them "
            f"(see {Path(args.out) / 'README.md'}), fill {Path(args.out) / 'measurements.csv'}"
            f", then: oracle device register NAME --csv "
            f"{Path(args.out) / 'measurements.csv'}",
        )
    elif args.action == "onboard":
        from client_sdk.measure.onboard import format_report, onboard
        from client_sdk.measure.timing_env import check_flush_denormal, check_pin_cpus

        try:  # --pin-cpus / --flush-denormal this machine cannot do: a message, no traceback
            check_pin_cpus(args.pin_cpus)
            if args.flush_denormal:
                check_flush_denormal()
        except ValueError as exc:
            raise SystemExit(f"oracle device onboard: {exc}") from None
        report = onboard(
            c,
            args.name,
            args.space,
            progress=_progress(args),
            graph_optimization=args.ort_graph_optimization,
            log=(lambda msg: print(msg, file=sys.stderr)) if args.json else print,
            **_options(args, *ONBOARD_OPTIONS),
        )
        _emit(args, report, format_report(report))
        warn_quality(c.get_device(args.name, args.space))
