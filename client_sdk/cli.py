"""``oracle``: the user-side command line (tables by default, ``--json`` everywhere)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client_sdk._extras import MissingExtra
from client_sdk.client import OracleClient
from client_sdk.errors import OracleClientError
from client_sdk.types import DeviceInfo


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
            raise SystemExit(f"line {bad + 1}: expected an architecture index like line 1, "
                             f"got '{lines[bad][:60]}'")
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


def _progress(args: argparse.Namespace) -> bool | None:
    """Progress bars: never with --quiet/--json, else only on a terminal (None = auto)."""
    return False if (args.quiet or args.json) else None


def _read_measurements(
    path: str, space: str | None = None, *, skip_bad_rows: bool = False
) -> Any:
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
            "--space out)")
    files = {e["file"]: e["arch"] for e in manifest["files"]} if manifest else {}
    try:
        f = open(path, newline="")  # noqa: SIM115
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc}") from None
    with f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        if "arch" not in header or "latency_ms" not in header:
            other = [c for c in header if c.startswith("latency")]
            hint = (f" (found '{other[0]}': the latency column is in milliseconds, named "
                    "latency_ms)") if other else ""
            raise SystemExit(f"{path}: expected a CSV with header 'arch,latency_ms' (other "
                             f"columns such as 'file' are allowed){hint}")
        reader.fieldnames = header
        rows = [(reader.line_num, row) for row in reader]
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
                g = (sp.genes_of_index([int(arch)]) if indices else sp.parse(arch)[None])
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
    if bad:
        listing = "\n  ".join(bad[:50]) + (f"\n  ... {len(bad) - 50} more" if len(bad) > 50
                                           else "")
        if not skip_bad_rows:
            raise SystemExit(
                f"{path}: {len(bad)} bad row(s) of {len(rows)}; nothing registered (fix "
                f"them, or pass --skip-bad-rows to use the {len(values)} good rows):\n  "
                + listing)
        print(f"{path}: skipped {len(bad)} bad row(s):\n  {listing}", file=sys.stderr)
    if not values:
        raise SystemExit(f"{path}: no measurements to register")
    if sp is None:
        return dict(zip(keys, values, strict=True))
    return np.stack(genes), np.asarray(values, dtype=np.float64)


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
        raise SystemExit(f"{source}: unknown contract field(s) {unknown} (have "
                         f"{sorted(known)})")
    out = {k: v for k, v in data.items() if v not in (None, "")}
    if out.get("unit") == "ms":
        out["unit"] = "ms/inference"
    return out


#: ``manifest.json``'s kind (``client_sdk.measure.export.MANIFEST_KIND``, kept equal by a test)
EXPORT_KIND = "latency-oracle device export"

DEVICE_COLUMNS = ("full_name", "source", "head_kind", "num_samples", "expected_spearman",
                  "monotonicity", "quality")


def cmd_spaces(args: argparse.Namespace, c: OracleClient) -> None:
    spaces = c.list_spaces()
    rows = [
        {"name": s.name, "genes": s.num_genes, "table_archs": s.num_architectures,
         "devices": len(s.table_devices), "description": s.description}
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
    row = {"name": info.name, "genes": info.num_genes, "space_size": info.space_size,
           "owner": info.owner or "-", "example": info.example_arch}
    _emit(args, info, _table([row], ("name", "genes", "space_size", "owner", "example")))


def cmd_devices(args: argparse.Namespace, c: OracleClient) -> None:
    devices = c.list_devices(args.space or "")
    rows = [asdict(d) for d in devices]
    _emit(args, devices, _table(rows, DEVICE_COLUMNS))


def warn_quality(d: DeviceInfo) -> None:
    """A plain warning on stderr when the device's predictions are low-confidence."""
    if d.quality != "low":
        return
    lines = [f"warning: {d.full_name} is LOW-CONFIDENCE: expected Spearman "
             f"{d.expected_spearman:.3f} (FLOPs ranking {d.flops_spearman:.3f}) from "
             f"{d.num_samples} measurements; about {d.advised_samples} are advised "
             f"(`oracle device add` more)."]
    lines += [f"  - {w}" for w in d.warnings]
    print("\n".join(lines), file=sys.stderr)


def cmd_device(args: argparse.Namespace, c: OracleClient) -> None:
    if args.action == "show":
        d = c.get_device(args.name, args.space or "")
        text = "\n".join(f"{k:18} {v}" for k, v in asdict(d).items())
        _emit(args, d, text)
    elif args.action == "register":
        if not args.csv:
            raise SystemExit("device register needs --csv FILE (header arch,latency_ms)")
        contract = _contract(args)
        measurements = _read_measurements(args.csv, args.space,
                                          skip_bad_rows=args.skip_bad_rows)
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
                c, args.space, args.out, samples=args.samples,
                retest=20 if args.retest is None else args.retest, seed=args.seed,
                batch_size=args.batch_size, fmt=args.format, onnx_cache=args.onnx_cache,
                log=lambda msg: print(msg, file=sys.stderr),
            )
        except (FileExistsError, ValueError) as exc:
            raise SystemExit(f"oracle device export: {exc}") from None
        rows = [{"file": e["file"], "kind": e["kind"], "arch": e["arch"]}
                for e in manifest["files"]]
        _emit(args, manifest, _table(rows, ("file", "kind", "arch")) + "\n\nmeasure them "
              f"(see {Path(args.out) / 'README.md'}), fill {Path(args.out) / 'measurements.csv'}"
              f", then: oracle device register NAME --csv "
              f"{Path(args.out) / 'measurements.csv'}")
    elif args.action == "onboard":
        from client_sdk.measure.onboard import format_report, onboard

        report = onboard(
            c, args.name, args.space, samples=args.samples, threads=args.threads,
            batch_size=args.batch_size, device=args.device, validate=args.validate,
            progress=_progress(args), seed=args.seed, repeats=args.repeats,
            rounds=args.rounds,
            statistic=args.statistic, target_spearman=args.target_spearman,
            max_samples=args.max_samples, round_size=args.round_size, retest=args.retest,
            retest_threshold=args.retest_threshold, session_check=args.session_check,
            register_retest=args.register_retest, runtime=args.runtime,
            onnx_cache=args.onnx_cache, graph_optimization=args.ort_graph_optimization,
            log=(lambda msg: print(msg, file=sys.stderr)) if args.json else print,
        )
        _emit(args, report, format_report(report))
        warn_quality(c.get_device(args.name, args.space))


def cmd_rank(args: argparse.Namespace, c: OracleClient) -> None:
    archs = _read_archs(args.file)
    res = c.rank(args.space, _native_archs(archs), args.device, top_k=args.top_k,
                 max_latency_ms=args.max_latency_ms, return_uncertainty=args.uncertainty)
    data = {
        d: [
            {"rank": r + 1, "index": int(i), "arch": archs[i],
             "latency_ms": float(res.latency_ms[d][i])}
            for r, i in enumerate(res.order[d])
        ]
        for d in res.devices
    }
    text = "\n\n".join(
        f"{d} (expected Spearman {res.expected_spearman[d]:.3f})\n"
        + _table(rows, ("rank", "index", "latency_ms", "arch"))
        for d, rows in data.items()
    )
    _emit(args, data, text)


def cmd_suggest(args: argparse.Namespace, c: OracleClient) -> None:
    from client_sdk.spaces import get_space

    genes = c.suggest_references(args.space, args.n, args.seed, device=args.device or "")
    archs = get_space(args.space).format_many(genes)
    _emit(args, archs, "\n".join(archs))


def cmd_compare(args: argparse.Namespace, c: OracleClient) -> None:
    if args.all:
        _compare_all(args, c)
        return
    if not (args.a and args.b):
        raise SystemExit("oracle compare: give two devices, or --all --space SPACE")
    cmp = c.compare_devices(args.a, args.b, args.space or "")
    _emit(args, cmp, "\n".join(f"{k:20} {v}" for k, v in asdict(cmp).items()))


def _compare_all(args: argparse.Namespace, c: OracleClient) -> None:
    from client_sdk.similarity import similarity_matrix

    space = args.space or "nasbench201"
    names = [d.name for d in c.list_devices(space)]
    rho = similarity_matrix(c, space, names)
    data: dict[str, Any] = {"space": space, "devices": names, "spearman_predicted": rho}
    text = _similarity_text(names, rho)
    if args.plot:
        from client_sdk.search.plots import plot_similarity

        path, order = plot_similarity(
            names, rho, args.plot,
            title=f"{space}: device similarity (Spearman of predicted latencies)",
        )
        data.update(plot=str(path), cluster_order=order)
        text += f"\nwrote {path}"
    _emit(args, data, text)


def _similarity_text(names: list[str], rho: np.ndarray) -> str:
    rows = []
    for i, name in enumerate(names):
        others = [j for j in np.argsort(-rho[i]) if j != i]
        best = others[0] if others else i
        worst = others[-1] if others else i
        rows.append({"device": name, "most_similar": names[best], "rho_max": float(rho[i, best]),
                     "least_similar": names[worst], "rho_min": float(rho[i, worst])})
    return _table(rows, ("device", "most_similar", "rho_max", "least_similar", "rho_min"))


def cmd_search(args: argparse.Namespace, c: OracleClient) -> None:
    from client_sdk.search import search

    budget = args.max_latency_ms
    loop: dict = {}
    if args.measure_local:
        from client_sdk.search.loop import local_measure

        loop = {"measure": local_measure(args.space, len(args.device), threads=args.threads,
                                         device=args.measure_device, progress=_progress(args)),
                "measure_budget": args.budget, "rounds": args.rounds}
    elif args.budget:
        raise SystemExit("--budget needs --measure-local (or use the SDK with a measure callback)")
    resolution = args.resolution
    if resolution not in (None, "auto"):
        resolution = float(resolution)
    try:
        result = search(
            c, args.space, args.device, objective=args.objective,
            evaluations=args.evaluations, population=args.population, max_latency_ms=budget,
            seed=args.seed, latency_mode=args.latency_mode, checkpoint=args.checkpoint,
            resume=args.resume, progress=_progress(args), time_limit_s=args.time_limit,
            latency_objective=args.latency_objective, latency_resolution_ms=resolution,
            **loop,
        )
    except ValueError as exc:  # a bad objective, budget or setting: said, not a traceback
        raise SystemExit(f"oracle search: {exc}") from None
    front = result.front
    written = []
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        front.to_json(out / "front.json")
        front.to_csv(out / "front.csv")
        written += [out / "front.json", out / "front.csv"]
        if args.plot:
            front.plot(out / "pareto.png", max_latency_ms=budget,
                       log_latency=args.log_latency, top_worth=args.top_worth)
            written.append(out / "pareto.png")
    measured = result.archive.get("measured_ms", {})
    num_measured = int(sum(np.isfinite(v).sum() for v in measured.values()) // max(
        1, len(measured)))
    data = {
        "summary": result.summary(),
        "measured": num_measured,
        "measure_s": round(float(result.archive.get("measure_s", 0.0)), 3),
        "front": [
            {"arch": a, "accuracy": float(front.accuracy[i]),
             "latency_ms": {d: float(front.latency_ms[d][i]) for d in front.devices}}
            for i, a in enumerate(front.archs)
        ],
        "written": [str(p) for p in written],
    }
    text = front.table() + "\n" + result.summary()
    if num_measured:
        text += (f"\nclosed loop: {num_measured} architectures measured here and added to the "
                 f"device ({data['measure_s']:.1f} s measuring, not in the search time)")
    if written:
        text += "\nwrote " + ", ".join(str(p) for p in written)
    _emit(args, data, text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oracle", description="Latency oracle client.")
    p.add_argument("--target", default="localhost:50051",
                   help="server address, or several comma-separated (round-robin)")
    p.add_argument("--token", default=None, help="bearer token for write RPCs")
    p.add_argument("--tls-ca", default=None, help="CA certificate (PEM) to verify the server")
    p.add_argument("--tls-cert", default=None, help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", default=None, help="client key (mutual TLS)")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline per RPC (s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bars (they are only drawn on a terminal anyway)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("spaces", help="list search spaces")
    spc = sub.add_parser("space", help="register a search space from a definition | show one")
    spc.add_argument("action", choices=("register", "show"))
    spc.add_argument("name", nargs="?", help="space name (show)")
    spc.add_argument("--file", default=None, help="definition file, YAML or JSON (register)")
    d = sub.add_parser("devices", help="list devices")
    d.add_argument("--space", default="")

    dev = sub.add_parser(
        "device", help="show | register | add | delete | onboard a device | export the "
                       "networks to measure on a device the SDK cannot run on")
    dev.add_argument("action",
                     choices=("show", "register", "add", "delete", "onboard", "export"))
    dev.add_argument("name_pos", nargs="?", help="device name (or use --name)")
    dev.add_argument("--name", default=None, help="device name (same as the positional)")
    dev.add_argument("--space", default=None,
                     help="search space: nasbench201, fbnet, ofa_mbv3 or a defined one "
                          "(default: the export's space for a CSV of `device export`, else "
                          "nasbench201)")
    dev.add_argument("--csv", default=None,
                     help="measurements: CSV with header arch,latency_ms (other columns are "
                          "ignored); every row is checked, a bad one stops the command")
    dev.add_argument("--skip-bad-rows", action="store_true",
                     help="register/add: leave out (and list) bad rows instead of stopping")
    dev.add_argument("--contract", default=None,
                     help="JSON object or JSON file: batch_size, threads, runtime, ... "
                          "(default: contract.json beside --csv, if any)")
    dev.add_argument("--samples", type=int, default=10,
                     help="onboard/export: suggested reference architectures to measure "
                          "(default %(default)s)")
    dev.add_argument("--threads", type=int, default=None,
                     help="onboard: torch threads when measuring (default: torch's current "
                          "count; recorded in the device's contract)")
    dev.add_argument("--batch-size", type=int, default=1,
                     help="onboard: batch size measured (recorded in the device's contract; "
                          "default %(default)s)")
    dev.add_argument("--device", default="cpu", help="cpu or cuda (onboard)")
    dev.add_argument("--validate", type=int, default=0,
                     help="onboard: also measure this many fresh random architectures and "
                          "report the oracle's and FLOPs' Spearman on them (default 0)")
    dev.add_argument("--seed", type=int, default=0,
                     help="onboard: seed of the references' suggestion and of the retest / "
                          "validation draws (default %(default)s)")
    on = dev.add_argument_group("onboard: measurement and adaptive rounds")
    on.add_argument("--repeats", type=int, default=30, help="timed runs per architecture")
    on.add_argument("--rounds", type=int, default=6, help="interleaved rounds (>= 2)")
    on.add_argument("--statistic", default="median",
                    choices=("median", "mean", "min", "p10", "p25"),  # harness.STATISTICS
                    help="per-architecture statistic of the timed runs (default %(default)s)")
    on.add_argument("--target-spearman", type=float, default=None,
                    help="measure in rounds until the leave-one-out estimate reaches this")
    on.add_argument("--max-samples", type=int, default=None,
                    help="sample budget of the adaptive rounds (default 4 x --samples, plus "
                         "the registered retest archs)")
    on.add_argument("--round-size", type=int, default=5, help="architectures per round")
    on.add_argument("--retest", type=int, default=None,
                    help="random archs measured for the retest ceiling (default 20; 0 with "
                         "--validate >= 20 and --no-session-check); export: random archs "
                         "exported with the references (default 20)")
    on.add_argument("--retest-threshold", type=float, default=0.90,
                    help="re-measure once, then warn, when the retest ceiling is below")
    on.add_argument("--no-register-retest", dest="register_retest", action="store_false",
                    help="register only the references, not the retest archs measured with "
                         "them")
    on.add_argument("--no-session-check", dest="session_check", action="store_false",
                    help="skip measuring the references and retest archs again in a later "
                         "pass (the Spearman between passes shows a device whose latencies "
                         "change with time)")
    on.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                    help="time the torch network (eager) or its ONNX export in an ONNX "
                         "Runtime CPU session (needs the [measure] extra's onnxruntime; "
                         "default %(default)s)")
    on.add_argument("--onnx-cache", default=None, metavar="DIR",
                    help="onboard --runtime onnxruntime / export: exported .onnx files "
                         "(default $LATENCY_ORACLE_ONNX_CACHE or ~/.cache/latency-oracle/onnx)")
    on.add_argument("--ort-graph-optimization", default="all",
                    choices=("disable", "basic", "extended", "all"),
                    help="onnxruntime graph optimisation level (default %(default)s)")
    ex = dev.add_argument_group("export: the networks to measure on any device, offline")
    ex.add_argument("--format", default="onnx", choices=("onnx",),
                    help="file format of the exported networks (default %(default)s)")
    ex.add_argument("--out", default=None, metavar="DIR",
                    help="folder of the ONNX files, measurements.csv, contract.json, "
                         "manifest.json and README.md")

    r = sub.add_parser(
        "rank",
        help="rank architectures (one per line: strings, table/NATS-Bench indices, or JSON "
             "FBNet op lists / OFA subnet dicts) for devices",
    )
    r.add_argument("--space", required=True)
    r.add_argument("--device", action="append", required=True)
    r.add_argument("--file", default=None, help="file of architectures (default stdin)")
    r.add_argument("--top-k", type=int, default=None)
    r.add_argument("--max-latency-ms", type=float, default=None)
    r.add_argument("--uncertainty", action="store_true")

    s = sub.add_parser("suggest", help="architectures to measure on a new device")
    s.add_argument("--space", required=True)
    s.add_argument("-n", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=None,
                   help="a registered device: the next architectures to measure on it")

    cmp = sub.add_parser("compare", help="monotonicity between two devices, or all of a space")
    cmp.add_argument("a", nargs="?")
    cmp.add_argument("b", nargs="?")
    cmp.add_argument("--space", default="")
    cmp.add_argument("--all", action="store_true",
                     help="every device of --space (default nasbench201): Spearman matrix")
    cmp.add_argument("--plot", default=None, metavar="PNG",
                     help="with --all: write a clustered similarity heatmap")

    se = sub.add_parser("search", help="NSGA-II: accuracy vs predicted latency")
    se.add_argument("--space", default="nasbench201")
    se.add_argument("--device", action="append", required=True)
    se.add_argument("--objective", default="cifar10",
                    help="accuracy metric of the space's table (NAS-Bench-201: cifar10, "
                         "cifar100, imagenet16_120) or 'params' (log10 parameters, any space)")
    se.add_argument("--evaluations", type=int, default=3000)
    se.add_argument("--population", type=int, default=64)
    se.add_argument("--max-latency-ms", type=float, default=None)
    se.add_argument("--latency-mode", choices=("per_device", "worst"), default="per_device")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--time-limit", type=float, default=None)
    se.add_argument("--checkpoint", default=None)
    se.add_argument("--resume", action="store_true")
    se.add_argument("--out", default=None)
    se.add_argument("--plot", action="store_true")
    se.add_argument("--log-latency", action="store_true", help="plot: log latency axis")
    se.add_argument("--top-worth", type=int, default=20,
                    help="plot: at most this many worth-measuring points")
    se.add_argument("--latency-objective", choices=("mean", "upper", "prob"), default="mean",
                    help="optimise the prediction, the interval's upper bound, or "
                         "P(latency <= --max-latency-ms)")
    se.add_argument("--resolution", default=None,
                    help="device latency step in ms (ties below it), or 'auto' (inferred "
                         "from the measurements of --measure-local)")
    se.add_argument("--measure-local", action="store_true",
                    help="closed loop: time the chosen architectures on THIS machine (torch "
                         "harness) and add them to the device, which must be this machine")
    se.add_argument("--budget", type=int, default=0, help="architectures to measure in total")
    se.add_argument("--rounds", type=int, default=2, help="measuring rounds")
    se.add_argument("--threads", type=int, default=None, help="torch threads when measuring")
    se.add_argument("--measure-device", default="cpu", help="cpu or cuda (--measure-local)")
    return p


COMMANDS = {
    "spaces": cmd_spaces, "space": cmd_space, "devices": cmd_devices, "device": cmd_device,
    "rank": cmd_rank,
    "suggest": cmd_suggest, "compare": cmd_compare, "search": cmd_search,
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


if __name__ == "__main__":
    sys.exit(main())
