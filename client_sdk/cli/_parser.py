"""The ``oracle`` argument parser: global options and one sub-parser per command."""

from __future__ import annotations

import argparse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oracle", description="Latency oracle client.")
    p.add_argument(
        "--target",
        default="localhost:50051",
        help="server address, or several comma-separated (round-robin)",
    )
    p.add_argument("--token", default=None, help="bearer token for write RPCs")
    p.add_argument("--tls-ca", default=None, help="CA certificate (PEM) to verify the server")
    p.add_argument("--tls-cert", default=None, help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", default=None, help="client key (mutual TLS)")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline per RPC (s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bars (they are only drawn on a terminal anyway)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("spaces", help="list search spaces")
    spc = sub.add_parser("space", help="register a search space from a definition | show one")
    spc.add_argument("action", choices=("register", "show"))
    spc.add_argument("name", nargs="?", help="space name (show)")
    spc.add_argument("--file", default=None, help="definition file, YAML or JSON (register)")
    d = sub.add_parser("devices", help="list devices")
    d.add_argument("--space", default="")

    dev = sub.add_parser(
        "device",
        help="show | register | add | delete | onboard a device | export the "
        "networks to measure on a device the SDK cannot run on | cache: show, prune or "
        "clear the ONNX export cache",
    )
    dev.add_argument(
        "action", choices=("show", "register", "add", "delete", "onboard", "export", "cache")
    )
    dev.add_argument("name_pos", nargs="?", help="device name (or use --name)")
    dev.add_argument("--name", default=None, help="device name (same as the positional)")
    dev.add_argument(
        "--space",
        default=None,
        help="search space: nasbench201, fbnet, ofa_mbv3 or a defined one "
        "(default: the export's space for a CSV of `device export`, else "
        "nasbench201)",
    )
    dev.add_argument(
        "--csv",
        default=None,
        help="measurements: CSV with header arch,latency_ms (with --models: "
        "name,latency_ms; other columns are ignored); every row is checked, a bad one "
        "stops the command",
    )
    dev.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="register/add: leave out (and list) bad rows instead of stopping",
    )
    dev.add_argument(
        "--contract",
        default=None,
        help="JSON object or JSON file: batch_size, threads, runtime, ... "
        "(default: contract.json beside --csv, if any)",
    )
    dev.add_argument(
        "--samples",
        type=int,
        default=10,
        help="onboard/export: suggested reference architectures to measure (default %(default)s)",
    )
    dev.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onboard, register --measure: torch threads when measuring (default: "
        "torch's current count; recorded in the device's contract)",
    )
    dev.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="onboard: batch size measured (recorded in the device's contract; "
        "default %(default)s)",
    )
    dev.add_argument("--device", default="cpu", help="cpu or cuda (onboard)")
    dev.add_argument(
        "--validate",
        type=int,
        default=0,
        help="onboard: also measure this many fresh random architectures and "
        "report the oracle's and FLOPs' Spearman on them (default 0)",
    )
    dev.add_argument(
        "--seed",
        type=int,
        default=0,
        help="onboard: seed of the references' suggestion and of the retest / "
        "validation draws (default %(default)s)",
    )
    on = dev.add_argument_group("onboard: measurement and adaptive rounds")
    on.add_argument("--repeats", type=int, default=30, help="timed runs per architecture")
    on.add_argument("--rounds", type=int, default=6, help="interleaved rounds (>= 2)")
    on.add_argument(
        "--statistic",
        default="median",
        choices=("median", "mean", "min", "p10", "p25"),  # harness.STATISTICS
        help="per-architecture statistic of the timed runs (default %(default)s)",
    )
    on.add_argument(
        "--target-spearman",
        type=float,
        default=None,
        help="measure in rounds until the leave-one-out estimate reaches this",
    )
    on.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="sample budget of the adaptive rounds (default 4 x --samples, plus "
        "the registered retest archs)",
    )
    on.add_argument("--round-size", type=int, default=5, help="architectures per round")
    on.add_argument(
        "--retest",
        type=int,
        default=None,
        help="random archs measured for the retest ceiling (default 20; 0 with "
        "--validate >= 20 and --no-session-check); export: random archs "
        "exported with the references (default 20)",
    )
    on.add_argument(
        "--retest-threshold",
        type=float,
        default=0.90,
        help="re-measure once, then warn, when the retest ceiling is below",
    )
    on.add_argument(
        "--no-register-retest",
        dest="register_retest",
        action="store_false",
        help="register only the references, not the retest archs measured with them",
    )
    on.add_argument(
        "--no-session-check",
        dest="session_check",
        action="store_false",
        help="skip measuring the references and retest archs again in a later "
        "pass (the Spearman between passes shows a device whose latencies "
        "change with time)",
    )
    on.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="time the torch network (eager) or its ONNX export in an ONNX "
        "Runtime CPU session (needs the [measure] extra's onnxruntime; "
        "default %(default)s)",
    )
    on.add_argument(
        "--onnx-cache",
        default=None,
        metavar="DIR",
        help="onboard --runtime onnxruntime / export / cache: exported .onnx files "
        "(default $LATENCY_ORACLE_ONNX_CACHE or ~/.cache/latency-oracle/onnx)",
    )
    on.add_argument(
        "--onnx-cache-max-mb",
        type=float,
        default=None,
        metavar="MB",
        help="onboard --runtime onnxruntime / export: keep the ONNX cache under MB "
        "megabytes (2**20 bytes), least recently used files evicted after each export, "
        "never the run's own (default $LATENCY_ORACLE_ONNX_CACHE_MAX_MB or 2048; 0 = unlimited)",
    )
    on.add_argument(
        "--ort-graph-optimization",
        default="all",
        choices=("disable", "basic", "extended", "all"),
        help="onnxruntime graph optimisation level (default %(default)s)",
    )
    on.add_argument(
        "--pin-cpus",
        type=cpu_list,
        default=None,
        metavar="0[,1]",
        help="onboard: run the process's threads on these CPUs only while timing "
        "(os.sched_setaffinity, Linux; ids or ranges: 0,1 or 0-3; default: not pinned)",
    )
    on.add_argument(
        "--flush-denormal",
        action="store_true",
        help="onboard: flush float32 denormals to zero while timing "
        "(torch.set_flush_denormal; ONNX Runtime: session.set_denormal_as_zero)",
    )
    nets = _models_options(dev, "register --models")
    nets.add_argument(
        "--measure",
        type=int,
        default=None,
        metavar="N",
        help="time N of the networks (the ones the server suggests) on this machine "
        "(--threads, --rounds, --repeats) and register the device from them",
    )
    nets.add_argument(
        "--names", default=None, help="with --models: the networks to measure, a,b,..."
    )
    ex = dev.add_argument_group("export: the networks to measure on any device, offline")
    ex.add_argument(
        "--format",
        default="onnx",
        choices=("onnx",),
        help="file format of the exported networks (default %(default)s)",
    )
    ex.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="folder of the ONNX files, measurements.csv, contract.json, "
        "manifest.json and README.md",
    )

    ca = dev.add_argument_group("cache: the ONNX export cache (--onnx-cache DIR)")
    ca.add_argument(
        "--prune",
        action="store_true",
        help="remove the least recently used files until the cache is under --max-mb",
    )
    ca.add_argument(
        "--max-mb",
        type=float,
        default=None,
        metavar="MB",
        help="with --prune: the size to prune to (default $LATENCY_ORACLE_ONNX_CACHE_MAX_MB or "
        "2048; 0 = unlimited)",
    )
    ca.add_argument("--clear", action="store_true", help="remove every cached file")

    r = sub.add_parser(
        "rank",
        help="rank architectures (one per line: strings, table/NATS-Bench indices, or JSON "
        "FBNet op lists / OFA subnet dicts) for devices",
    )
    r.add_argument("--space", default=None, help="the architectures' space (not with --models)")
    r.add_argument("--device", action="append", default=None, help="a device (repeatable)")
    r.add_argument(
        "--devices", dest="device", action="extend", nargs="+", metavar="D", help="devices"
    )
    r.add_argument("--file", default=None, help="file of architectures (default stdin)")
    r.add_argument("--top-k", type=int, default=None)
    r.add_argument("--max-latency-ms", type=float, default=None)
    r.add_argument("--uncertainty", action="store_true")
    _models_options(r, "rank --models (with --devices, --top-k, --max-latency-ms)")

    s = sub.add_parser("suggest", help="architectures to measure on a new device")
    s.add_argument("--space", required=True)
    s.add_argument("-n", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--device",
        default=None,
        help="a registered device: the next architectures to measure on it",
    )

    cmp = sub.add_parser("compare", help="monotonicity between two devices, or all of a space")
    cmp.add_argument("a", nargs="?")
    cmp.add_argument("b", nargs="?")
    cmp.add_argument("--space", default="")
    cmp.add_argument(
        "--all",
        action="store_true",
        help="every device of --space (default nasbench201): Spearman matrix",
    )
    cmp.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="with --all: write a clustered similarity heatmap",
    )

    se = sub.add_parser("search", help="NSGA-II: accuracy vs predicted latency")
    se.add_argument("--space", default="nasbench201")
    se.add_argument("--device", action="append", required=True)
    se.add_argument(
        "--objective",
        default="cifar10",
        help="accuracy metric of the space's table (NAS-Bench-201: cifar10, "
        "cifar100, imagenet16_120) or 'params' (log10 parameters, any space)",
    )
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
    se.add_argument(
        "--top-worth", type=int, default=20, help="plot: at most this many worth-measuring points"
    )
    se.add_argument(
        "--latency-objective",
        choices=("mean", "upper", "prob"),
        default="mean",
        help="optimise the prediction, the interval's upper bound, or "
        "P(latency <= --max-latency-ms)",
    )
    se.add_argument(
        "--resolution",
        default=None,
        help="device latency step in ms (ties below it), or 'auto' (inferred "
        "from the measurements of --measure-local)",
    )
    se.add_argument(
        "--measure-local",
        action="store_true",
        help="closed loop: time the chosen architectures on THIS machine (torch "
        "harness) and add them to the device, which must be this machine",
    )
    se.add_argument("--budget", type=int, default=0, help="architectures to measure in total")
    se.add_argument("--rounds", type=int, default=2, help="measuring rounds")
    se.add_argument("--threads", type=int, default=None, help="torch threads when measuring")
    se.add_argument("--measure-device", default="cpu", help="cpu or cuda (--measure-local)")
    return p


def cpu_list(text: str) -> tuple[int, ...]:
    """``--pin-cpus``: ``0,1`` or ``0-3,6`` -> sorted distinct CPU ids."""
    ids: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if first < 0 or last < first:
                raise ValueError(part)
            ids.update(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a CPU list (ids or ranges, e.g. 0,1 or 0-3)"
        ) from None
    if not ids:
        raise argparse.ArgumentTypeError("--pin-cpus needs at least one CPU id")
    return tuple(sorted(ids))


def _models_options(p: argparse.ArgumentParser, what: str) -> argparse._ArgumentGroup:
    """``--models`` and its options (``client_sdk.cli.networks``)."""
    g = p.add_argument_group(f"{what}: your own networks in a models file")
    g.add_argument(
        "--models",
        default=None,
        metavar="FILE",
        help="Python file defining MODELS (name -> nn.Module, (module, input shape) or "
        ".onnx path) or models(); it is RUN like any Python config file",
    )
    g.add_argument(
        "--input-shape",
        default=None,
        metavar="1,3,224,224",
        help="input shape of the models, batch included (default: the file's INPUT_SHAPE)",
    )
    g.add_argument(
        "--space-name",
        default=None,
        help="name of the networks' space (default nets_ + a hash of the networks)",
    )
    # the global --json, accepted after the command too (SUPPRESS: never resets the global)
    g.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="as oracle --json"
    )
    return g
