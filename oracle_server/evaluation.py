"""``oracle-server evaluate``: the published protocols, reproduced from the bundled data.

* ``help``: HELP's device splits. The proxy is trained on the meta-train devices only;
  every unseen *test* device (and, separately reported, every *validation* device) is
  adapted from ``--samples`` reference architectures and scored by Spearman. The proxy
  never sees ``--arch-holdout`` of the architectures; scores are on those (and, as
  ``devices_whole_table``, on the whole table as HELP does).
* ``leave-family-out``: each hardware family in turn is held out of the proxy's basis;
  each held-out device is adapted from ``--samples`` random architectures over seeds.
* ``few-basis``: the proxy learns from ONE hardware group only (GPUs; CPUs and phones;
  FPGA/ASIC/edge accelerators — for OFA, one GPU model) and every device of the other
  groups is adapted from ``--samples`` random architectures over seeds.

Every protocol reports, beside each device's score, its FLOPs baseline and a *ceiling*: a
per-device LightGBM (the proxy's configuration) trained on up to 4,000 of that device's own
measurements (never on the scored archs) — what the device's noise allows.

Device roles: training (proxy basis) and validation devices are the only ones used for
any model / hyper-parameter choice; test devices are only scored.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client_sdk.spaces.descriptors import degenerate
from oracle_server.predictor import LatencyModel, ProxyConfig, build_model, spearman
from oracle_server.predictor.selection import member_kinds


@dataclass(frozen=True)
class HelpSplit:
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    references: tuple[int, ...]  # official table indices of HELP's 10 references
    published: dict[str, float] = field(default_factory=dict)


_NB_TRAIN = ("1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r",
             "samsung_a50", "pixel3", "essential_ph_1", "samsung_s7")
HELP_SPLITS: dict[str, HelpSplit] = {
    "nasbench201": HelpSplit(
        _NB_TRAIN, ("titanx_1", "titanx_32", "titanx_256", "gold_6240"),
        ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"),
        (11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462),
        {"titan_rtx_256": 0.987, "gold_6226": 0.989, "fpga": 0.985, "pixel2": 0.802,
         "raspi4": 0.890, "eyeriss": 0.940, "mean": 0.932, "flops_mean": 0.787},
    ),
    "fbnet": HelpSplit(
        tuple(d.replace("_256", "_64") for d in _NB_TRAIN),
        ("titanx_1", "titanx_32", "titanx_64", "gold_6240"),
        ("fpga", "raspi4", "eyeriss"),
        (3328, 3790, 3313, 890, 3052, 2538, 1640, 2514, 457, 2100),
        {"raspi4": 0.887, "eyeriss": 0.943, "fpga": 0.892, "mean": 0.910},
    ),
    "ofa_mbv3": HelpSplit(
        ("2080ti_1", "2080ti_32", "2080ti_64", "titan_xp_1", "titan_xp_32", "titan_xp_64",
         "v100_1", "v100_32", "v100_64"),
        ("titan_rtx_1", "titan_rtx_32"), ("titan_rtx_64",),
        (1316, 1587, 1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948),
    ),
}

FAMILY_PREFIXES: dict[str, tuple[str, ...]] = {
    "desktop_gpu": ("1080ti", "2080ti", "titan_rtx", "titanx", "titanxp", "titan_xp", "v100"),
    "server_cpu": ("gold", "silver"),
    "phone": ("pixel", "samsung", "essential"),
    "edge": ("eyeriss", "fpga", "raspi4"),
}
#: OFA has GPUs only: its "families" are the GPU models
OFA_FAMILIES = {"2080ti": ("2080ti",), "titan_rtx": ("titan_rtx",), "titan_xp": ("titan_xp",),
                "v100": ("v100",)}
#: few-basis groups: the proxy learns from one group, the others are adapted
FEW_BASIS_GROUPS = {"gpu": ("desktop_gpu",), "cpu_phone": ("server_cpu", "phone"),
                    "edge": ("edge",)}
CEILING_TRAIN = 4000
FAST_CONFIG = ProxyConfig(num_rounds=25, num_leaves=15)
log = logging.getLogger(__name__)


def families(space: str, devices: tuple[str, ...]) -> dict[str, list[str]]:
    table = OFA_FAMILIES if space == "ofa_mbv3" else FAMILY_PREFIXES
    out = {name: [d for d in devices if d.startswith(pre)] for name, pre in table.items()}
    return {k: v for k, v in out.items() if v}


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", choices=("nasbench201", "fbnet", "ofa_mbv3"),
                        default="nasbench201")
    parser.add_argument("--protocol", choices=("help", "leave-family-out", "few-basis",
                                               "leave-space-out", "cross-space"),
                        default="help",
                        help="leave-space-out / cross-space: oracle_server.evaluation_spaces")
    parser.add_argument("--held-out", nargs="+", default=None,
                        help="leave-space-out: the spaces held out in turn (default: all)")
    parser.add_argument("--score-rows", type=int, default=2000,
                        help="leave-space-out: archs of the held-out space scored per device")
    parser.add_argument("--samples", type=int, default=10, help="measured archs per device")
    parser.add_argument("--reference", choices=("random", "suggested", "help"), default=None,
                        help="default: help for protocol help, random for leave-family-out")
    parser.add_argument("--seeds", type=int, default=5, help="repetitions of random draws")
    parser.add_argument("--arch-holdout", type=float, default=0.2,
                        help="fraction of archs the proxy never sees; scores are on those")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--cache-dir", type=Path, default=None, help="proxy artifact cache")
    parser.add_argument("--fast", action="store_true", help="tiny proxy (tests, smoke runs)")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip the per-device many-sample ceiling models")


def run_evaluate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.protocol in ("leave-space-out", "cross-space"):
        from oracle_server import evaluation_spaces

        return evaluation_spaces.run(argparse.Namespace(
            protocol=args.protocol, spaces=args.held_out or list(evaluation_spaces.SPACES),
            samples=[args.samples], seeds=args.seeds, score_rows=args.score_rows,
            ceiling=args.ceiling, json=args.json))
    if args.samples < 2:
        print("evaluate: --samples must be >= 2", file=sys.stderr)
        return 2
    reference = args.reference or ("help" if args.protocol == "help" else "random")
    opts = EvalOptions(args.space, args.samples, reference, args.seeds, args.arch_holdout,
                       args.cache_dir, FAST_CONFIG if args.fast else ProxyConfig(),
                       getattr(args, "ceiling", True))
    if args.protocol == "help":
        result = evaluate_help(opts)
        print(format_help(result))
    elif args.protocol == "few-basis":
        result = evaluate_few_basis(opts)
        print(format_lfo(result))
    else:
        result = evaluate_leave_family_out(opts)
        print(format_lfo(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(clean_json(result), indent=2, allow_nan=False))
    return 0


@dataclass(frozen=True)
class EvalOptions:
    space: str
    samples: int
    reference: str  # random | suggested | help
    seeds: int
    arch_holdout: float
    cache_dir: Path | None = None
    config: ProxyConfig = field(default_factory=ProxyConfig)
    ceiling: bool = True


def _holdout_rows(n: int, fraction: float, seed: int = 1234) -> np.ndarray:
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, round(fraction * n), replace=False))


def reference_rows(model: LatencyModel, opts: EvalOptions, allowed: np.ndarray, seed: int,
                   help_refs: tuple[int, ...] = ()) -> np.ndarray:
    """Table rows to "measure" on a device for one repetition."""
    sp = model.space
    rng = np.random.default_rng(seed)
    if opts.reference == "suggested":
        genes = model.suggest_references(opts.samples, seed=seed, pool=sp.table.genes[allowed])
        return sp.table_rows(genes)
    if opts.reference == "help" and help_refs:
        rows = sp.rows_of_index(help_refs)[: opts.samples]
        extra = opts.samples - len(rows)
        if extra > 0:  # HELP's list has 10: top up with random architectures
            rest = np.setdiff1d(allowed, rows)
            rows = np.r_[rows, rng.choice(rest, extra, replace=False)]
        return rows
    return rng.choice(allowed, opts.samples, replace=False)


def head_inputs(model: LatencyModel, genes: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, basis, descriptors) of ``genes``: what a head fits on and predicts from."""
    feats = model.features(genes)
    return feats, model.basis(genes, feats), model.descriptors(genes)


def predict_inputs(
    model: LatencyModel, genes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`head_inputs` in ``HeadFit.predict``'s order, (basis, features, descriptors):
    ``head.predict(*predict_inputs(model, genes))``."""
    feats, basis, desc = head_inputs(model, genes)
    return basis, feats, desc


@functools.lru_cache(maxsize=2)
def table_inputs(model: LatencyModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``head_inputs`` of the whole bundled table, once per model (every device of a
    protocol is adapted and scored on the same table)."""
    return head_inputs(model, model.space.table.genes)


def adapt_device(model: LatencyModel, device: str, opts: EvalOptions, allowed: np.ndarray,
                 score_rows: np.ndarray, help_refs: tuple[int, ...] = ()) -> dict:
    """Adapt a head to ``device`` for each seed; Spearman / calibration on ``score_rows``."""
    table = model.space.table
    y = table.device_column(device)
    feats, basis, desc = table_inputs(model)
    deterministic = opts.reference == "help" and help_refs and opts.samples <= len(help_refs)
    seeds = 1 if deterministic else opts.seeds
    out: dict[str, list] = {k: [] for k in ("spearman", "whole_table", "expected", "cover80",
                                            "within10", "kind", "fit_ms")}
    for seed in range(seeds):
        rows = reference_rows(model, opts, allowed, seed, help_refs)
        head = model.fit_head(table.genes[rows], y[rows])
        score = np.setdiff1d(score_rows, rows)
        pred = head.predict(basis, feats, desc)
        lo, hi = pred.interval(0.8)
        out["spearman"].append(spearman(pred.latency_ms[score], y[score]))
        out["whole_table"].append(spearman(pred.latency_ms, y))
        out["expected"].append(head.expected_spearman)
        out["cover80"].append(float(np.mean((y[score] >= lo[score]) & (y[score] <= hi[score]))))
        # nn-Meter's absolute accuracy: share of predictions within +-10 % of the measurement
        out["within10"].append(float(np.mean(np.abs(pred.latency_ms[score] / y[score] - 1)
                                             <= 0.1)))
        out["kind"].append("+".join(member_kinds(head)))
        out["fit_ms"].append(1000 * head.fit_seconds)
    flops = desc[:, 0] + desc[:, 1]
    ceiling = device_ceiling(model, device, allowed, score_rows) if opts.ceiling else None
    return {"spearman": float(np.mean(out["spearman"])),
            "flops": spearman(flops[score_rows], y[score_rows]),
            "ceiling": ceiling,
            "whole_table": float(np.mean(out["whole_table"])),
            "expected_spearman": float(np.nanmean(out["expected"])),
            "cover80": float(np.mean(out["cover80"])),
            "within10": float(np.mean(out["within10"])),
            "head_kinds": out["kind"], "fit_ms_median": float(np.median(out["fit_ms"])),
            "seeds": seeds}


def device_ceiling(model: LatencyModel, device: str, allowed: np.ndarray,
                   score_rows: np.ndarray, seed: int = 0) -> float:
    """Spearman on ``score_rows`` of a LightGBM trained on up to ``CEILING_TRAIN`` of the
    device's own measurements (rows in ``allowed``, never scored): the device's noise ceiling."""
    from oracle_server.predictor.proxy import train_proxy

    sp = model.space
    pool = np.setdiff1d(allowed, score_rows)
    if len(pool) < CEILING_TRAIN // 2:  # no arch hold-out: split the scored rows instead
        pool = score_rows
    rng = np.random.default_rng(seed)
    n_train = min(CEILING_TRAIN, len(pool) // 2 if pool is score_rows else len(pool))
    rows = np.sort(rng.choice(pool, n_train, replace=False))
    score = np.setdiff1d(score_rows, rows)
    feats = table_inputs(model)[0]
    y = sp.table.device_column(device)
    proxy = train_proxy(sp.name, feats[rows], y[rows][:, None], (device,), rows,
                        model.proxy.config)
    return spearman(proxy.predict(feats[score])[:, 0], y[score])


def evaluate_help(opts: EvalOptions) -> dict:
    split = HELP_SPLITS[opts.space]
    start = time.perf_counter()
    model, allowed, score_rows = _model_for(opts, split.train)
    sp = model.space
    flops = sp.flops(sp.table.genes)
    details = {}
    for device in (*split.validation, *split.test):
        details[device] = adapt_device(model, device, opts, allowed, score_rows, split.references)
    test = {d: details[d]["spearman"] for d in split.test}
    flops_base = {d: spearman(flops[score_rows], sp.table.device_column(d)[score_rows])
                  for d in split.test}
    return {
        "space": opts.space, "protocol": "help", "samples": opts.samples,
        "reference": opts.reference, "arch_holdout": opts.arch_holdout,
        "devices": test, "mean": float(np.mean(list(test.values()))),
        "published": split.published,
        "flops_baseline": {**flops_base, "mean": float(np.mean(list(flops_base.values())))},
        "validation": {d: details[d]["spearman"] for d in split.validation},
        "devices_whole_table": {d: details[d]["whole_table"] for d in split.test},
        "details": details,
        "roles": {"train (proxy basis)": list(split.train),
                  "validation (model/hyper-parameter choices)": list(split.validation),
                  "test (scored only)": list(split.test)},
        "proxy": model.proxy.config.to_dict(), "seconds": time.perf_counter() - start,
    }


def _model_for(opts: EvalOptions, basis_devices: tuple[str, ...] | None,
               holdout: tuple[str, ...] = ()) -> tuple[LatencyModel, np.ndarray, np.ndarray]:
    from client_sdk.spaces import get_space

    sp = get_space(opts.space)
    n = sp.num_architectures
    excluded = _holdout_rows(n, opts.arch_holdout)
    allowed = np.setdiff1d(np.arange(n), excluded)
    model = build_model(opts.space, holdout_devices=holdout, basis_devices=basis_devices,
                        cache_dir=opts.cache_dir, config=opts.config, exclude_rows=excluded)
    score_rows = excluded if len(excluded) else allowed
    # degenerate archs (pruned to ~nothing by some runtimes) are neither references nor scored
    live = ~degenerate(opts.space, sp.table.genes)
    return model, allowed[live[allowed]], score_rows[live[score_rows]]


def evaluate_leave_family_out(opts: EvalOptions) -> dict:
    from client_sdk.spaces import get_space

    start = time.perf_counter()
    fams = families(opts.space, get_space(opts.space).table.devices)
    per_family, devices, details = {}, {}, {}
    for fam, members in fams.items():
        model, allowed, score_rows = _model_for(opts, None, tuple(members))
        for device in members:
            details[device] = adapt_device(model, device, opts, allowed, score_rows)
            devices[device] = details[device]["spearman"]
        per_family[fam] = float(np.mean([devices[d] for d in members]))
    return {
        "space": opts.space, "protocol": "leave-family-out", "samples": opts.samples,
        "reference": opts.reference, "seeds": opts.seeds, "arch_holdout": opts.arch_holdout,
        "devices": devices, "mean": float(np.mean(list(devices.values()))),
        "families": {f: {"devices": m, "mean": per_family[f]} for f, m in fams.items()},
        "family_mean": float(np.mean(list(per_family.values()))),
        "details": details, "proxy": opts.config.to_dict(),
        "seconds": time.perf_counter() - start,
    }


def few_basis_groups(space: str, devices: tuple[str, ...]) -> dict[str, list[str]]:
    """Group name -> devices: the proxy's only basis in turn (OFA: one GPU model each)."""
    fams = families(space, devices)
    if space == "ofa_mbv3":
        return fams
    out = {g: [d for f in members for d in fams.get(f, [])]
           for g, members in FEW_BASIS_GROUPS.items()}
    return {g: v for g, v in out.items() if v}


def evaluate_few_basis(opts: EvalOptions) -> dict:
    """The proxy learns from one hardware group; every other group's devices are adapted."""
    from client_sdk.spaces import get_space

    start = time.perf_counter()
    devices_all = get_space(opts.space).table.devices
    groups = few_basis_groups(opts.space, devices_all)
    per_group, details = {}, {}
    for group, basis in groups.items():
        model, allowed, score_rows = _model_for(opts, tuple(basis))
        targets = [d for d in devices_all if d not in basis]
        res = {d: adapt_device(model, d, opts, allowed, score_rows) for d in targets}
        details[group] = res
        per_group[group] = {"basis": basis, "devices": {d: v["spearman"] for d, v in res.items()},
                            "mean": float(np.mean([v["spearman"] for v in res.values()])),
                            "flops_mean": float(np.mean([v["flops"] for v in res.values()]))}
    means = [g["mean"] for g in per_group.values()]
    return {
        "space": opts.space, "protocol": "few-basis", "samples": opts.samples,
        "reference": opts.reference, "seeds": opts.seeds, "arch_holdout": opts.arch_holdout,
        "groups": per_group, "mean": float(np.mean(means)),
        "flops_mean": float(np.mean([g["flops_mean"] for g in per_group.values()])),
        "details": details, "proxy": opts.config.to_dict(),
        "seconds": time.perf_counter() - start,
    }


def format_help(r: dict) -> str:
    pub, flops = r["published"], r["flops_baseline"]
    lines = [f"HELP protocol, {r['space']}, {r['samples']} samples ({r['reference']} "
             f"references), scored on {'held-out' if r['arch_holdout'] > 0 else 'all'} archs",
             f"{'device':16s} {'ours':>7s} {'HELP':>7s} {'FLOPs':>7s} {'ceiling':>8s} "
             f"{'exp.rho':>8s} {'cover80':>8s} {'+-10%':>6s}  head"]
    for d, v in r["devices"].items():
        det = r["details"][d]
        lines.append(f"{d:16s} {v:7.3f} {_f(pub.get(d))} {flops[d]:7.3f} "
                     f"{_f(det.get('ceiling'))} {det['expected_spearman']:8.3f} "
                     f"{det['cover80']:8.2f} {det['within10']:6.2f}  "
                     f"{','.join(sorted(set(det['head_kinds'])))}")
    lines.append(f"{'mean':16s} {r['mean']:7.3f} {_f(pub.get('mean'))} {flops['mean']:7.3f}")
    val = ", ".join(f"{d} {v:.3f}" for d, v in r["validation"].items())
    lines.append(f"validation devices (used for choices): {val}")
    lines.append(f"proxy basis (training) devices: {', '.join(r['roles']['train (proxy basis)'])}")
    return "\n".join(lines)


def format_lfo(r: dict) -> str:
    if r["protocol"] == "few-basis":
        return format_few_basis(r)
    lines = [f"leave-family-out, {r['space']}, {r['samples']} {r['reference']} samples, "
             f"{r['seeds']} seeds"]
    lines.append(f"{'device':16s} {'ours':>7s} {'FLOPs':>7s} {'ceiling':>8s}")
    for d, v in r["details"].items():
        lines.append(f"{d:16s} {v['spearman']:7.3f} {v['flops']:7.3f} {_f(v['ceiling'])}")
    for fam, info in r["families"].items():
        devs = ", ".join(f"{d} {r['devices'][d]:.3f}" for d in info["devices"])
        lines.append(f"{fam:12s} {info['mean']:.3f}  ({devs})")
    lines.append(f"overall mean over devices {r['mean']:.3f}; mean over families "
                 f"{r['family_mean']:.3f}")
    return "\n".join(lines)


def format_few_basis(r: dict) -> str:
    lines = [f"few-basis, {r['space']}, {r['samples']} {r['reference']} samples, "
             f"{r['seeds']} seeds: the proxy learns from one group, the others are adapted"]
    for group, info in r["groups"].items():
        lines.append(f"basis = {group} ({', '.join(info['basis'])})")
        lines.append(f"  {'device':16s} {'ours':>7s} {'FLOPs':>7s} {'ceiling':>8s}")
        for d, v in r["details"][group].items():
            lines.append(f"  {d:16s} {v['spearman']:7.3f} {v['flops']:7.3f} {_f(v['ceiling'])}")
        lines.append(f"  mean {info['mean']:.3f} (FLOPs {info['flops_mean']:.3f})")
    lines.append(f"mean over groups {r['mean']:.3f} (FLOPs {r['flops_mean']:.3f})")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return f"{v:7.3f}" if v is not None and np.isfinite(v) else f"{'-':>7s}"


def clean_json(o: object) -> object:
    """NaN -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): clean_json(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean_json(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o
