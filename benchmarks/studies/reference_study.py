"""Which references to measure on a new device: random vs suggested strategies (issue #13).

NON-TEST devices only: HELP validation devices (proxy on HELP's meta-train devices) and
leave-family-out non-test devices (basis = every non-test device outside the family);
``--samples`` references, ``--seeds`` draws, Spearman on the 20 % held-out architectures.
Strategies: ``random``; ``suggested`` (the product's: quantile strata of the proxy's mean
prediction, farthest-in-feature-space pick per stratum); ``strata_random`` (same strata,
random pick); ``flops_strata`` (strata of log FLOPs, hardware-agnostic, random pick).

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.studies.reference_study \\
        --json benchmarks/results/studies/reference_study.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._cli import load_average, parser, write_json
from benchmarks.common import EVAL_CACHE as CACHE
from benchmarks.common import nontest_family_splits
from client_sdk.spaces import get_space
from oracle_server.evaluation import HELP_SPLITS, EvalOptions, _model_for, adapt_device
from oracle_server.predictor import model as model_module
from oracle_server.predictor.references import suggest_references


def strata_random(space):
    def pick(pool_genes, pool_basis, _features, n, seed=0):
        rng = np.random.default_rng(seed)
        order = np.argsort(np.log(np.maximum(pool_basis, 1e-3)).mean(1), kind="stable")
        return pool_genes[[int(rng.choice(s)) for s in np.array_split(order, n)]]

    return pick


def flops_strata(space):
    def pick(pool_genes, _basis, _features, n, seed=0):
        rng = np.random.default_rng(seed)
        order = np.argsort(space.flops(pool_genes), kind="stable")
        return pool_genes[[int(rng.choice(s)) for s in np.array_split(order, n)]]

    return pick


STRATEGIES = {
    "random": None,
    "suggested": lambda _space: suggest_references,
    "strata_random": strata_random,
    "flops_strata": flops_strata,
}


def run(space: str, samples: int, seeds: int) -> dict:
    split, sp = HELP_SPLITS[space], get_space(space)
    out = {}
    for name, make in STRATEGIES.items():
        if make is not None:
            model_module.suggest_references = make(sp)
        opts = EvalOptions(
            space,
            samples,
            "random" if make is None else "suggested",
            seeds,
            0.2,
            CACHE,
            ceiling=False,
        )
        model, allowed, score = _model_for(opts, split.train)
        help_val = {
            d: adapt_device(model, d, opts, allowed, score)["spearman"] for d in split.validation
        }
        lfo = {}
        for _family, basis, scored in nontest_family_splits(space):
            m, al, sc = _model_for(opts, basis)
            lfo.update({d: adapt_device(m, d, opts, al, sc)["spearman"] for d in scored})
        out[name] = {
            "help_validation": help_val,
            "lfo_nontest": lfo,
            "help_validation_mean": float(np.mean(list(help_val.values()))),
            "lfo_nontest_mean": float(np.mean(list(lfo.values()))),
        }
        print(
            f"{space:12s} {name:14s} HELP validation {out[name]['help_validation_mean']:.4f}"
            f"  leave-family-out non-test {out[name]['lfo_nontest_mean']:.4f}",
            flush=True,
        )
    model_module.suggest_references = suggest_references
    return out


def main() -> None:
    p = parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="fbnet,nasbench201,ofa_mbv3")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--seeds", type=int, default=5)
    a = p.parse_args()
    start = time.perf_counter()
    result = {
        "samples": a.samples,
        "seeds": a.seeds,
        "loadavg": load_average(),
        "spaces": {s: run(s, a.samples, a.seeds) for s in a.spaces.split(",")},
    }
    result["seconds"] = time.perf_counter() - start
    if a.json:
        write_json(a.json, result, indent=1)


if __name__ == "__main__":
    main()
