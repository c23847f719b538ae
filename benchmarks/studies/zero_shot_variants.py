"""Zero-shot cross-space variants (issue #26): which layer-level zero-shot model ranks a
device's other space best, given only that device's table in one space.

Same protocol as ``oracle-server evaluate --protocol cross-space``
(``evaluation_spaces.cross_space``): FBNet<->OFA (9 shared GPU settings) and FBNet<->NB201
(22 shared devices); each shared device's source table ranks its whole target table; the
target space's descriptors (no latency) of 2,000 random candidates standardise the members;
the prior fills unidentified coefficients from the HELP train devices of the spaces other
than the target. Variants of ``layer_zero_shot.zero_shot``:

* ``target_ridge`` (0 = the plain non-negative fit) on the linear member's contributions to
  the target's mean latency (picks, among source fits that are equally good because source
  descriptors are collinear, the one that extrapolates least);
* ``min_source_rho`` (-1 = keep all): members whose Spearman on the device's own source
  table is below it are left out;
* reference rows: each member alone, the naive six-descriptor NNLS, FLOPs, and the fixed
  hedge ``powerlaw + flops + kernels`` (kernel count as a member).

Selection score (what the shipped values were chosen on): the mean over the four directions
of the mean over **selection devices** (not a HELP test device in the source or the target
space). ``mean_all`` / ``mean_nontest`` (target-space test devices excluded) are reported
beside. ``lodo``: the grid's (ridge, threshold) chosen on three directions' selection
devices, scored on the held-out fourth (how the choice generalises to a new space pair).
``product_path``: the server's own transferred basis (``cross_space.device_model``: every
other bundled space of a hardware setting pooled) with each bundled space held out.

    .venv/bin/python -m benchmarks.studies.zero_shot_variants \\
        --json benchmarks/results/studies/zero_shot_variants.json
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable

import numpy as np

from benchmarks._cli import finish, parser
from oracle_server import evaluation_spaces as ev
from oracle_server.evaluation import HELP_SPLITS
from oracle_server.predictor.heads import spearman
from oracle_server.predictor.layer_level import CrossSpacePrior, flops_of, naive_nnls
from oracle_server.predictor.layer_zero_shot import (
    MIN_SOURCE_RHO,
    TARGET_RIDGE,
    zero_shot,
)

RIDGES = (0.0, 1e-5, 1e-4, 1e-3)
THRESHOLDS = (-1.0, 0.25, 0.3, 1 / 3, 0.4, 0.5)

Predict = Callable[[np.ndarray, np.ndarray, CrossSpacePrior, np.ndarray, np.ndarray], np.ndarray]


def _zs(**kw) -> Predict:
    def f(ds, ys, prior, ref, dt):
        return zero_shot(ds, ys, prior, target_desc6=ref, **kw).predict_log(dt)

    return f


def _hedge(ds, ys, prior, ref, dt) -> np.ndarray:
    """powerlaw + FLOPs + kernel count, each standardised over the target sample."""
    pw = zero_shot(ds, ys, prior, members=("powerlaw",))

    def parts(d: np.ndarray) -> list[np.ndarray]:
        return [pw.predict_log(d), np.log(np.maximum(flops_of(d), 1.0)),
                np.log(np.maximum(d[:, 4], 1.0))]

    return sum((p - q.mean()) / (q.std() or 1.0)
               for p, q in zip(parts(dt), parts(ref), strict=True))


def variants() -> dict[str, Predict]:
    out: dict[str, Predict] = {
        "previous (ridge 0, all members)": _zs(target_ridge=0.0, min_source_rho=-1.0),
        "shipped": _zs(),
        "linear only": _zs(members=("linear",), target_ridge=0.0),
        "linear only, ridge": _zs(members=("linear",)),
        "powerlaw only": _zs(members=("powerlaw",)),
        "naive nnls": lambda ds, ys, prior, ref, dt: naive_nnls(ds, ys).predict_log(dt),
        "flops": lambda ds, ys, prior, ref, dt: np.log(np.maximum(flops_of(dt), 1.0)),
        "hedge powerlaw+flops+kernels": _hedge,
    }
    for r, t in itertools.product(RIDGES, THRESHOLDS):
        out[f"grid ridge={r:g} min_rho={t:.3g}"] = _zs(target_ridge=r, min_source_rho=t)
    return out


def run(log=None) -> dict:
    vs = variants()
    per: dict[str, dict[str, dict[str, float]]] = {name: {} for name in vs}
    roles: dict[str, dict[str, dict[str, bool]]] = {}
    for a, b in ev.DIRECTIONS:
        key = f"{a}->{b}"
        start = time.perf_counter()
        prior = CrossSpacePrior.from_bundled(exclude_space=b)
        ds, ls, _, dev_s = ev.space_data(a)
        dt, lt, _, dev_t = ev.space_data(b)
        ref_rows = np.random.default_rng(0).permutation(len(dt))[:2000]  # as cross_space
        ref = dt[ref_rows]
        roles[key] = {}
        for name in vs:
            per[name][key] = {}
        for src, tgt in ev.shared_devices(a, b):
            ys, yt = ls[:, dev_s.index(src)], lt[:, dev_t.index(tgt)]
            nontest = tgt not in HELP_SPLITS[b].test
            roles[key][tgt] = {"nontest": nontest,
                               "selection": nontest and src not in HELP_SPLITS[a].test}
            for name, f in vs.items():
                per[name][key][tgt] = spearman(f(ds, ys, prior, ref, dt), yt)
        if log:
            log(f"{key}: {len(roles[key])} devices, {time.perf_counter() - start:.1f}s")

    def means(name: str) -> dict[str, dict[str, float]]:
        out = {}
        for key, devs in per[name].items():
            r = roles[key]
            out[key] = {
                "mean_all": float(np.mean(list(devs.values()))),
                "mean_nontest": float(np.mean([v for d, v in devs.items() if r[d]["nontest"]])),
                "mean_selection": float(np.mean([v for d, v in devs.items()
                                                 if r[d]["selection"]])),
            }
        return out

    table = {name: means(name) for name in vs}
    for m in table.values():
        m["selection_score"] = float(np.mean([v["mean_selection"] for v in m.values()]))
    grid = [n for n in vs if n.startswith("grid ")]
    lodo = {}
    for held in per["shipped"]:
        best = max(grid, key=lambda n: np.mean([table[n][k]["mean_selection"]
                                                for k in per[n] if k != held]))
        lodo[held] = {"chosen": best, **table[best][held]}
    return {
        "settings": {"ridges": list(RIDGES), "thresholds": list(THRESHOLDS),
                     "shipped": {"target_ridge": TARGET_RIDGE, "min_source_rho": MIN_SOURCE_RHO},
                     "selection_devices": "not a HELP test device in the source or target space"},
        "variants": table,
        "lodo": lodo,
        "devices": {"shipped": per["shipped"],
                    "previous (ridge 0, all members)": per["previous (ridge 0, all members)"],
                    "naive nnls": per["naive nnls"]},
        "roles": roles,
    }


PRODUCT_VARIANTS = {
    "previous (ridge 0, all members)": {"target_ridge": 0.0, "min_source_rho": -1.0},
    "ridge only": {"min_source_rho": -1.0},
    "gate only": {"target_ridge": 0.0},
    "shipped": {},
}


def product_path(log=None) -> dict:
    """The server's zero-shot basis (``cross_space.device_model``: every other bundled space
    of the hardware setting, ``ROWS_PER_SPACE`` rows each, no prior) for each bundled space
    held out, scored on 2,000 random rows of it: mean Spearman over the held-out space's
    devices and over its non-test devices."""
    from oracle_server.predictor import cross_space as cs

    out: dict = {}
    for space in cs.BUNDLED:
        d6, lat, _, devs = ev.space_data(space)
        rows = np.random.default_rng(0).permutation(len(d6))[:2000]
        sources = cs._sources((space,))
        scores: dict[str, dict[str, float]] = {name: {} for name in PRODUCT_VARIANTS}
        for j, dev in enumerate(devs):
            hw = cs.hardware_name(dev)
            if hw not in sources:
                continue
            desc6, _, ms = cs._source(hw, (space,))
            for name, kw in PRODUCT_VARIANTS.items():
                head = zero_shot(desc6, ms, target_desc6=d6[rows], **kw)
                scores[name][dev] = spearman(head.predict_log(d6[rows]), lat[rows, j])
        test = set(HELP_SPLITS[space].test)
        out[space] = {name: {"mean_all": float(np.mean(list(v.values()))),
                             "mean_nontest": float(np.mean([r for d, r in v.items()
                                                            if d not in test])),
                             "devices": len(v)} for name, v in scores.items()}
        if log:
            log(f"product path, {space} held out: " + " ".join(
                f"{n}={m['mean_all']:.3f}" for n, m in out[space].items()))
    return out


def format_table(result: dict) -> str:
    dirs = list(next(iter(result["variants"].values())))
    dirs = [d for d in dirs if d != "selection_score"]
    head = f"{'variant':36s} sel   " + " ".join(f"{d:>26s}" for d in dirs)
    lines = [head, " " * 43 + " ".join(f"{'all/nontest/selection':>26s}" for _ in dirs)]
    for name, m in result["variants"].items():
        lines.append(f"{name:36s} {m['selection_score']:.3f} " + " ".join(
            f"{m[d]['mean_all']:>10.3f}/{m[d]['mean_nontest']:.3f}/{m[d]['mean_selection']:.3f}"
            for d in dirs))
    lines.append("leave-one-direction-out (grid chosen on the other three directions):")
    for d, r in result["lodo"].items():
        lines.append(f"  {d:24s} {r['chosen']:36s} all={r['mean_all']:.3f} "
                     f"nontest={r['mean_nontest']:.3f}")
    lines.append("product path (server's transferred basis, space held out; all/nontest):")
    for space, m in result.get("product_path", {}).items():
        lines.append(f"  {space:12s} " + "  ".join(
            f"{n}={v['mean_all']:.3f}/{v['mean_nontest']:.3f}" for n, v in m.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.splitlines()[0])
    args = ap.parse_args(argv)
    start = time.perf_counter()
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run(log)
    result["product_path"] = product_path(log)
    result["seconds"] = time.perf_counter() - start
    print(format_table(result))
    return finish(args.json, result, indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
