"""Leave-space-out of the *served* pipeline: what a device registered in a space with no
table gets from the server.

For each bundled space S in turn, S is treated as a space from a definition: its basis is
transferred from the other spaces only (``predictor.cross_space.transfer_table(S,
exclude=(S,))``: S's latencies are never read), the proxy, descriptor prior and heads are
built on that, and every device of S is registered from k random measured archs of S
(seeds) and scored on ``--score-rows`` other archs. Beside it, from the same samples: the
layer-level head (``layer_level.fit_layer_head``), the naive six-descriptor NNLS, FLOPs.

``--devices``: the HELP roles scored (``evaluation.HELP_SPLITS``; ``all``: every table
device, also those in no HELP role): choices are made on ``train validation`` only; test
devices are scored, never selected on. The JSON reports
every scored device with its role, the mean over them and over each role, the test mean
separately (``mean_test``).

    python -m benchmarks.leave_space_out_served --devices train validation  # to choose

    python -m benchmarks.leave_space_out_served \
        --json benchmarks/results/leave_space_out_served.json
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks._cli import add_options, finish, parser, print_table
from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import descriptors
from oracle_server.evaluation import HELP_SPLITS, predict_inputs
from oracle_server.predictor import ProxyConfig, spearman
from oracle_server.predictor.cross_space import transfer_table, transferred
from oracle_server.predictor.layer_level import CrossSpacePrior, fit_layer_head, naive_nnls
from oracle_server.predictor.model import _train_model

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")


ROLES = ("train", "validation", "test")
SCORES = ("served", "layer_level", "nnls", "flops")


def role_of(space: str, device: str) -> str:
    split = HELP_SPLITS[space]
    for role in ROLES:
        if device in getattr(split, role):
            return role
    return "other"


def run_space(
    space: str, k: int, seeds: int, score_rows: int, log, roles: tuple[str, ...] = (*ROLES, "other")
) -> dict:
    sp = get_space(space)
    start = time.perf_counter()
    basis = transferred(sp, exclude=(space,))
    table = transfer_table(sp, basis=basis)
    model = _train_model(sp, table.devices, ProxyConfig(), np.zeros(0, np.int64), table, basis)
    log(
        f"{space}: transferred basis of {len(table.devices)} devices, model in "
        f"{time.perf_counter() - start:.1f} s"
    )
    prior = CrossSpacePrior.from_bundled(exclude_space=space)
    genes = sp.table.genes
    n = len(genes)
    desc6 = descriptors(space, genes)[:, :6]
    per_device = {}
    for device in sp.table.devices:
        if role_of(space, device) not in roles:
            continue
        y = sp.table.device_column(device)
        scores: dict[str, list[float]] = {"served": [], "layer_level": [], "nnls": [], "flops": []}
        kinds = []
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 7])
            rows = rng.choice(n, k, replace=False)
            score = rng.choice(np.setdiff1d(np.arange(n), rows), score_rows, replace=False)
            head = model.fit_head(genes[rows], y[rows])
            pred = head.predict(*predict_inputs(model, genes[score]))
            scores["served"].append(spearman(pred.latency_ms, y[score]))
            kinds.append(head.kind)
            ll = fit_layer_head(desc6[rows], y[rows], prior)
            scores["layer_level"].append(spearman(ll.predict_ms(desc6[score]), y[score]))
            scores["nnls"].append(
                spearman(naive_nnls(desc6[rows], y[rows]).predict_ms(desc6[score]), y[score])
            )
            scores["flops"].append(spearman(desc6[score, 0] + desc6[score, 1], y[score]))
        per_device[device] = {key: float(np.mean(v)) for key, v in scores.items()}
        per_device[device]["role"] = role_of(space, device)
        per_device[device]["test"] = per_device[device]["role"] == "test"
        per_device[device]["kinds"] = sorted(set(kinds))

    def mean(devs: list[dict]) -> dict:
        return {key: float(np.mean([d[key] for d in devs])) for key in SCORES} if devs else {}

    out = {"k": k, "roles": list(roles), "mean_all": mean(list(per_device.values()))}
    for role in ROLES:
        out[f"mean_{role}"] = mean([d for d in per_device.values() if d["role"] == role])
    out["devices"] = per_device
    log(
        f"{space} k={k}: "
        + " | ".join(
            f"{scope[5:]} " + " ".join(f"{a}={b:.3f}" for a, b in out[scope].items())
            for scope in ("mean_all", "mean_train", "mean_validation", "mean_test")
            if out[scope]
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=list(SPACES), choices=SPACES)
    add_options(ap, samples=10, seeds=3, score_rows=2000)
    ap.add_argument(
        "--devices",
        nargs="+",
        default=["all"],
        choices=(*ROLES, "all"),
        help="HELP roles scored (choose on train/validation only)",
    )
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    roles = (
        (*ROLES, "other") if "all" in args.devices else tuple(r for r in ROLES if r in args.devices)
    )
    result = {
        "settings": {
            "samples": args.samples,
            "seeds": args.seeds,
            "score_rows": args.score_rows,
            "devices": list(roles),
        },
        "spaces": {
            s: run_space(s, args.samples, args.seeds, args.score_rows, log, roles)
            for s in args.spaces
        },
    }
    print_table(
        ("space", "scope", *SCORES),
        [
            (s, scope[5:], *(float(r[scope][k]) for k in SCORES))
            for s, r in result["spaces"].items()
            for scope in ("mean_all", "mean_train", "mean_validation", "mean_test")
            if r[scope]
        ],
    )
    return finish(args.json, result, indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
