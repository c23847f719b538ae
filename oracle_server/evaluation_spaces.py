"""Space-transfer protocols of ``oracle-server evaluate`` (issue 26), layer level only.

* ``leave-space-out``: each bundled space S in turn is unseen. The cross-space prior is
  learned from the basis (HELP training) devices of the OTHER spaces only; every device of
  S gets k measured architectures of S (random, several seeds) and ranks ``--score-rows``
  other architectures of S. Reported beside it, from the same samples: FLOPs, the naive
  non-negative fit on the six descriptors (``layer_level.naive_nnls``) and a per-device
  ceiling (LightGBM on the genes, trained on ``CEILING_TRAIN`` of that device's own rows of
  S, scored on the others). Means over all devices of S and over its HELP test devices.
* ``cross-space``: zero-shot. A device measured in a source space is fit on its whole
  source table and ranks its whole target table (FBNet<->OFA: 9 shared GPU settings;
  FBNet<->NB201: 22 shared devices). FLOPs and the naive fit zero-shot beside.

Nothing of the held-out / target space's tables is read except the k samples of the device
being scored (leave-space-out) or the scored column itself (Spearman). Design choices were
made on HELP validation devices only (``TUNED_ON``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

from oracle_server.evaluation import HELP_SPLITS
from oracle_server.predictor.cross_space import hardware_name
from oracle_server.predictor.heads import spearman
from oracle_server.predictor.layer_level import (
    NUM_BASE,
    SPACES,
    CrossSpacePrior,
    fit_layer_head,
    flops_of,
    naive_nnls,
    zero_shot,
)

PROTOCOLS = ("leave-space-out", "cross-space")
DIRECTIONS = (("fbnet", "ofa_mbv3"), ("ofa_mbv3", "fbnet"), ("fbnet", "nasbench201"),
              ("nasbench201", "fbnet"))
CEILING_TRAIN = 4000
#: devices whose scores informed design choices (head family, ensemble members, weights)
TUNED_ON = {s: HELP_SPLITS[s].validation for s in SPACES}


@functools.cache
def space_data(space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(desc6 (n, 6), latency_ms (n, d), genes, devices) of a bundled space."""
    from client_sdk.spaces import get_space
    from client_sdk.spaces.descriptors import descriptors

    sp = get_space(space)
    d6 = descriptors(space, sp.table.genes)[:, :NUM_BASE]
    return d6, np.asarray(sp.table.latency_ms), np.asarray(sp.table.genes), sp.table.devices


def _canonical(space: str, device: str) -> str:
    """Device identity across spaces (``cross_space.hardware_name``)."""
    return hardware_name(device)


def shared_devices(source: str, target: str) -> list[tuple[str, str]]:
    """(source name, target name) of devices measured in both spaces (same batch size)."""
    src = {_canonical(source, d): d for d in space_data(source)[3]}
    return [(src[_canonical(target, d)], d) for d in space_data(target)[3]
            if _canonical(target, d) in src]


def device_ceiling(space: str, column: int, score: np.ndarray, seed: int = 0) -> float:
    """LightGBM on the genes, trained on ``CEILING_TRAIN`` of the device's rows not in
    ``score``, scored on ``score``: what the device's noise allows."""
    import lightgbm as lgb

    _, lat, genes, _ = space_data(space)
    pool = np.setdiff1d(np.arange(len(lat)), score)
    rng = np.random.default_rng(seed)
    rows = rng.choice(pool, min(CEILING_TRAIN, len(pool)), replace=False)
    y = np.log(lat[:, column])
    params = {"objective": "regression", "num_leaves": 31, "learning_rate": 0.1,
              "verbose": -1, "num_threads": 1, "seed": seed}
    booster = lgb.train(params, lgb.Dataset(genes[rows].astype(np.float64), y[rows]), 200)
    return spearman(booster.predict(genes[score].astype(np.float64)), y[score])


def _means(per_device: dict[str, dict[str, float]], devices: tuple[str, ...]
           ) -> dict[str, float]:
    keys = next(iter(per_device.values())).keys()
    return {k: float(np.mean([per_device[d][k] for d in devices if d in per_device]))
            for k in keys}


def _roles(space: str) -> dict[str, list[str]]:
    split = HELP_SPLITS[space]
    return {"train": list(split.train), "validation": list(split.validation),
            "test": list(split.test)}


def leave_space_out(space: str, ks: tuple[int, ...] = (10, 20), seeds: int = 5,
                    score_rows: int = 2000, ceiling: bool = True,
                    log=None) -> dict:
    """Leave-space-out for one held-out ``space`` (see the module docstring)."""
    start = time.perf_counter()
    prior = CrossSpacePrior.from_bundled(exclude_space=space)
    d6, lat, _, devices = space_data(space)
    n = len(d6)
    flops = flops_of(d6)
    out: dict = {"space": space, "prior_devices": list(prior.devices), "k": {}}
    ceilings: dict[str, float] = {}
    for k in ks:
        per_device: dict[str, dict[str, float]] = {}
        for col, dev in enumerate(devices):
            y = lat[:, col]
            rows: dict[str, list[float]] = {"layer_level": [], "naive_nnls": [], "flops": [],
                                            "loo_estimate": []}
            for seed in range(seeds):
                perm = np.random.default_rng(seed).permutation(n)
                samp, score = perm[:k], perm[k:k + score_rows]
                head = fit_layer_head(d6[samp], y[samp], prior)
                rows["layer_level"].append(spearman(head.predict_log(d6[score]), y[score]))
                rows["loo_estimate"].append(head.loo_spearman)
                naive = naive_nnls(d6[samp], y[samp])
                rows["naive_nnls"].append(spearman(naive.predict_log(d6[score]), y[score]))
                rows["flops"].append(spearman(flops[score], y[score]))
            per_device[dev] = {key: float(np.nanmean(v)) for key, v in rows.items()}
            if ceiling and dev not in ceilings:
                score = np.random.default_rng(0).permutation(n)[k:k + score_rows]
                ceilings[dev] = device_ceiling(space, col, score)
            if ceiling:
                per_device[dev]["ceiling"] = ceilings[dev]
        split = HELP_SPLITS[space]
        out["k"][str(k)] = {
            "mean_all": _means(per_device, devices),
            "mean_test": _means(per_device, split.test),
            "mean_validation": _means(per_device, split.validation),
            "mean_train": _means(per_device, split.train),
            "devices": per_device,
        }
        if log:
            m = out["k"][str(k)]["mean_all"]
            log(f"leave-space-out {space} k={k}: " + " ".join(f"{a}={b:.3f}"
                                                               for a, b in m.items()))
    out["roles"] = _roles(space)
    out["seconds"] = time.perf_counter() - start
    return out


def cross_space(source: str, target: str, log=None, score_rows: int = 2000) -> dict:
    """Zero-shot: each shared device's source table ranks its whole target table."""
    start = time.perf_counter()
    prior = CrossSpacePrior.from_bundled(exclude_space=target)  # fills unidentified coefs
    ds, ls, _, dev_s = space_data(source)
    dt, lt, _, dev_t = space_data(target)
    flops = flops_of(dt)
    # the target's candidate archs (descriptors only, no latency) standardise the members
    ref = dt[np.random.default_rng(0).permutation(len(dt))[:score_rows]]
    per_device = {}
    for src_name, tgt_name in shared_devices(source, target):
        ys = ls[:, dev_s.index(src_name)]
        yt = lt[:, dev_t.index(tgt_name)]
        head = zero_shot(ds, ys, prior, target_desc6=ref)
        per_device[tgt_name] = {
            "layer_level": spearman(head.predict_log(dt), yt),
            "naive_nnls": spearman(naive_nnls(ds, ys).predict_log(dt), yt),
            "flops": spearman(flops, yt),
        }
    test = tuple(d for d in HELP_SPLITS[target].test if d in per_device)
    out = {"source": source, "target": target, "devices": per_device,
           "mean_all": _means(per_device, tuple(per_device)),
           "mean_test": _means(per_device, test) if test else {},
           "test_devices": list(test), "seconds": time.perf_counter() - start}
    if log:
        log(f"cross-space {source}->{target} ({len(per_device)} devices): "
            + " ".join(f"{a}={b:.3f}" for a, b in out["mean_all"].items()))
    return out


# ------------------------------------------------------------------- the CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=PROTOCOLS, default="leave-space-out")
    parser.add_argument("--spaces", nargs="+", choices=SPACES, default=list(SPACES),
                        help="held-out spaces (leave-space-out)")
    parser.add_argument("--samples", type=int, nargs="+", default=[10, 20],
                        help="measured archs per device (leave-space-out)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--score-rows", type=int, default=2000,
                        help="random archs of the held-out space scored per device and seed")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false")
    parser.add_argument("--json", type=Path, default=None, help="write results here")


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k in ("protocol", "spaces", "samples", "seeds", "score_rows", "ceiling")}
    result: dict = {"settings": settings,
                    "tuned_on": {s: list(v) for s, v in TUNED_ON.items()}}
    if args.protocol == "leave-space-out":
        if min(args.samples) < 3:
            print("evaluate: --samples must be >= 3", file=sys.stderr)
            return 2
        result["leave_space_out"] = {
            s: leave_space_out(s, tuple(args.samples), args.seeds, args.score_rows,
                               args.ceiling, log) for s in args.spaces}
    else:
        result["cross_space"] = {f"{a}->{b}": cross_space(a, b, log) for a, b in DIRECTIONS}
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def format_table(result: dict) -> str:
    lines = []
    for space, r in result.get("leave_space_out", {}).items():
        for k, block in r["k"].items():
            for scope in ("mean_all", "mean_test"):
                m = block[scope]
                lines.append(f"leave-space-out {space:12s} k={k:>2s} {scope[5:]:4s} "
                             + " ".join(f"{a}={b:.3f}" for a, b in m.items()))
    for name, r in result.get("cross_space", {}).items():
        for scope in ("mean_all", "mean_test"):
            if r[scope]:
                lines.append(f"cross-space {name:22s} {scope[5:]:4s} "
                             + " ".join(f"{a}={b:.3f}" for a, b in r[scope].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
