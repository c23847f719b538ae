"""Head-averaging rules compared on NON-TEST devices only (issue #13; selection evidence).

For each space, three validation settings: HELP validation devices with random draws of 10
(8 draws) and 20 (4 draws), proxy on HELP's meta-train devices; and leave-family-out on
non-test devices, 10 samples (5 draws; the proxy's basis is every non-test device outside
the family). Test devices (``HELP_SPLITS[space].test``) are never read. Per draw every
candidate head is fit once; the rules below are then applied to the same candidates:

* ``previous``: the rule before (top 2 by leave-one-out Spearman, first member's weight
  from {0, .25, .5, .75, 1} by LOO squared error, FLOPs fallback), re-implemented here;
* ``pbma T=t, max m``: pseudo-BMA weights ``exp(-(n/2t) log MSE_loo)``, the ``m`` heaviest
  members of weight >= 0.05 (``selection.py``), over all candidates or ``open`` = without
  the heads that read every basis column (``heads.ALL_COLUMN_KINDS``);
* ``open, descriptor+hybrid +b``: the ``open`` rule with a prior log-weight ``b`` for the
  two heads that carry the basis devices' knowledge (``descriptor``, ``hybrid``);
* ``product``: ``select_head`` as shipped, with the space's candidates.

Two independent sets of draws (``--seed-sets``) show whether a difference is noise.

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.studies.head_study \\
        --json benchmarks/results/studies/selection_pbma.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._cli import load_average, parser, write_json
from benchmarks.common import EVAL_CACHE as CACHE
from benchmarks.common import fit_candidates, nontest_family_splits
from client_sdk.spaces import get_space
from oracle_server.evaluation import (
    HELP_SPLITS,
    EvalOptions,
    _model_for,
    few_basis_groups,
    reference_rows,
    table_inputs,
)
from oracle_server.predictor.heads import (
    ALL_COLUMN_KINDS,
    HEAD_KINDS,
    spearman,
)
from oracle_server.predictor.selection import (
    FLOPS_FALLBACK_MARGIN,
    pbma_members,
    select_head,
)

PREVIOUS_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
SETTINGS = (("help_r10", 10, 8), ("help_r20", 20, 4), ("lfo_r10", 10, 5))
#: with --few-basis: the proxy learns from one group of non-test devices and every other
#: non-test device is adapted (hardware unlike the whole basis), 10 samples, 3 draws
FEW_BASIS_SETTING = ("fewbasis_r10", 10, 3)


def _mse(loo: np.ndarray, z: np.ndarray) -> float:
    return float(np.mean((loo - z) ** 2))


def previous_rule(d: dict) -> np.ndarray:
    z, kinds = d["z"], d["kinds"]

    def key(k: str) -> tuple[float, float]:
        rho = spearman(kinds[k][0], z)
        return (np.nan_to_num(rho, nan=-2.0), -_mse(kinds[k][0], z))

    a, b = sorted(kinds, key=key, reverse=True)[:2]
    la, lb = kinds[a][0], kinds[b][0]
    w = PREVIOUS_GRID[int(np.argmin([_mse(w * la + (1 - w) * lb, z) for w in PREVIOUS_GRID]))]
    loo, pred = w * la + (1 - w) * lb, w * kinds[a][1] + (1 - w) * kinds[b][1]
    if "flops" in kinds:
        rf, rho = spearman(kinds["flops"][0], z), np.nan_to_num(spearman(loo, z), nan=-2.0)
        if np.isfinite(rf) and rf > rho + FLOPS_FALLBACK_MARGIN:
            return kinds["flops"][1]
    return pred


def pbma_rule(
    temperature: float,
    max_members: int,
    exclude: tuple[str, ...] = (),
    bonus: dict[str, float] | None = None,
):
    """``bonus``: a prior log-weight per head kind added to its pseudo-BMA log-weight
    (multiplying a weight by ``exp(b)`` is dividing its LOO MSE by ``exp(2 T b / n)``)."""

    def rule(d: dict) -> np.ndarray:
        ks = [k for k in d["kinds"] if k not in exclude]
        n = len(d["z"])
        mse = np.array(
            [
                _mse(d["kinds"][k][0], d["z"])
                * np.exp(-2.0 * temperature * (bonus or {}).get(k, 0.0) / n)
                for k in ks
            ]
        )
        keep, w = pbma_members(mse, n, temperature, max_members)
        return np.tensordot(w, np.stack([d["kinds"][ks[i]][1] for i in keep]), axes=1)

    return rule


RULES = {
    "previous": previous_rule,
    "pbma T=1, max 4": pbma_rule(1.0, 4),
    "pbma T=2, max 4": pbma_rule(2.0, 4),
    "pbma T=4, max 4": pbma_rule(4.0, 4),
    "pbma T=2, max 3": pbma_rule(2.0, 3),
    "pbma T=2, all": pbma_rule(2.0, 99),
    "pbma T=2, max 4, open": pbma_rule(2.0, 4, ALL_COLUMN_KINDS),
    # a prior preference for the heads that carry the basis devices' knowledge (stop 23)
    "open, descriptor+hybrid +1": pbma_rule(
        2.0, 4, ALL_COLUMN_KINDS, {"descriptor": 1.0, "hybrid": 1.0}
    ),
    "open, descriptor+hybrid +2": pbma_rule(
        2.0, 4, ALL_COLUMN_KINDS, {"descriptor": 2.0, "hybrid": 2.0}
    ),
    "product": None,
}


def collect(model, device: str, opts: EvalOptions, allowed, score, seeds) -> list[dict]:
    y_all = model.space.table.device_column(device)
    feats, basis, desc = table_inputs(model)
    out = []
    for seed in seeds:
        rows = reference_rows(model, opts, allowed, seed)
        s = np.setdiff1d(score, rows)
        y = y_all[rows]
        kinds = fit_candidates(
            model,
            HEAD_KINDS,
            (feats[rows], basis[rows], desc[rows]),
            y,
            (feats[s], basis[s], desc[s]),
        )
        head = select_head(
            basis[rows],
            feats[rows],
            y,
            model.proxy.linear_weights,
            model.cost_matrix,
            kinds=model.head_kinds,
            descriptors=desc[rows],
            prior=model.prior,
        )
        product = np.log(head.predict(basis[s], feats[s], desc[s]).latency_ms)
        out.append(
            {
                "device": device,
                "z": np.log(y),
                "zs": np.log(y_all[s]),
                "kinds": kinds,
                "product": product,
            }
        )
    return out


def draws_for(space: str, seed_offset: int, settings=SETTINGS) -> dict[str, list[dict]]:
    split = HELP_SPLITS[space]
    out: dict[str, list[dict]] = {}
    for tag, n, draws in settings:
        seeds = range(seed_offset, seed_offset + draws)
        opts = EvalOptions(space, n, "random", draws, 0.2, CACHE)
        if tag.startswith("help"):
            model, allowed, score = _model_for(opts, split.train)
            out[tag] = [
                d
                for dev in split.validation
                for d in collect(model, dev, opts, allowed, score, seeds)
            ]
            continue
        out[tag] = []
        if tag.startswith("fewbasis"):
            test = set(split.test)
            devices = get_space(space).table.devices
            for members in few_basis_groups(space, devices).values():
                basis = tuple(d for d in members if d not in test)
                scored = [d for d in devices if d not in members and d not in test]
                if not basis or not scored:
                    continue
                model, allowed, score = _model_for(opts, basis)
                for dev in scored:
                    out[tag] += collect(model, dev, opts, allowed, score, seeds)
            continue
        for _family, basis, scored in nontest_family_splits(space):
            model, allowed, score = _model_for(opts, basis)
            for dev in scored:
                out[tag] += collect(model, dev, opts, allowed, score, seeds)
    return out


def score(draws: list[dict], rule) -> float:
    """Mean over devices of the mean held-out Spearman over draws (as the protocols)."""
    per: dict[str, list[float]] = {}
    for d in draws:
        pred = d["product"] if rule is None else rule(d)
        per.setdefault(d["device"], []).append(spearman(pred, d["zs"]))
    return float(np.mean([np.mean(v) for v in per.values()]))


def print_table(
    title: str, table: dict[str, dict[str, float]], width: int = 24, label=lambda c: c
) -> None:
    """Rows ``table[rule][column]`` (with a ``mean`` column added) under ``title``."""
    for row in table.values():
        row["mean"] = float(np.mean([v for k, v in row.items() if k != "mean"]))
    cols = list(next(iter(table.values())))
    print(f"\n{title}")
    print(f"{'rule':{width}s}" + "".join(f"{label(c):>16s}" for c in cols))
    for name, row in table.items():
        print(f"{name:{width}s}" + "".join(f"{row[c]:16.4f}" for c in cols))


def main() -> None:
    p = parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="fbnet,nasbench201,ofa_mbv3")
    p.add_argument("--seed-sets", default="0,100", help="first seed of each set of draws")
    p.add_argument(
        "--hybrid-columns",
        type=int,
        default=None,
        help="heads.descriptor.HYBRID_COLUMNS (basis outputs of the hybrid head)",
    )
    p.add_argument(
        "--rules",
        default=None,
        help="semicolon-separated subset of the rules (their names hold commas)",
    )
    p.add_argument(
        "--few-basis",
        action="store_true",
        help="also the few-basis setting (non-test devices only)",
    )
    a = p.parse_args()
    if a.hybrid_columns is not None:
        from oracle_server.predictor import heads

        heads.descriptor.HYBRID_COLUMNS = a.hybrid_columns
    rules = RULES if a.rules is None else {k: RULES[k] for k in a.rules.split(";")}
    start = time.perf_counter()
    result: dict = {
        "what": __doc__.split("\n\n")[0],
        "settings": SETTINGS,
        "sets": {},
        "loadavg": load_average(),
        "hybrid_columns": a.hybrid_columns,
    }
    for offset in (int(x) for x in a.seed_sets.split(",")):
        table: dict[str, dict[str, float]] = {name: {} for name in rules}
        for space in a.spaces.split(","):
            draws = draws_for(
                space, offset, SETTINGS + ((FEW_BASIS_SETTING,) if a.few_basis else ())
            )
            for tag, ds in draws.items():
                for name, rule in rules.items():
                    table[name][f"{space}/{tag}"] = score(ds, rule)
        print_table(
            f"seed set {offset}+ (mean held-out Spearman; columns space/setting)",
            table,
            label=lambda c: c.split("/")[0][:5] + "/" + c.split("/")[-1],
        )
        result["sets"][f"seeds {offset}+"] = table
    result["seconds"] = time.perf_counter() - start
    if a.json:
        write_json(a.json, result, indent=1)


if __name__ == "__main__":
    main()
