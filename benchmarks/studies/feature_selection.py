"""Feature / proxy hyper-parameter choices on NON-TEST devices only (selection evidence).

For one space and one variant (feature set or LightGBM setting):
* HELP validation devices, proxy on HELP's meta-train devices: HELP's 10 references and
  8 random draws of 10 (and 8 of 20), scored on the 20 % held-out archs;
* leave-family-out restricted to non-test devices: each family in turn is left out, the
  proxy's basis is every remaining NON-TEST device (test devices are neither basis nor
  scored), 5 random draws of 10.
Test devices (``HELP_SPLITS[space].test``) are never read.

Run: ``OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.studies.feature_selection SPACE VARIANT
--json OUT``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from benchmarks._cli import parser, write_json
from benchmarks.common import EVAL_CACHE as CACHE
from benchmarks.common import nontest_family_splits
from client_sdk.spaces import fbnet as fb
from client_sdk.spaces import get_space
from client_sdk.spaces import nasbench201 as nb
from client_sdk.spaces import ofa_mbv3 as ofa
from oracle_server.evaluation import (
    HELP_SPLITS,
    EvalOptions,
    _model_for,
    adapt_device,
)
from oracle_server.predictor import ProxyConfig

# ------------------------------------------------------------- candidate features
# Tried in the features round (2026-11) and rejected on non-test devices (evidence in
# benchmarks/results/studies/selection_evidence.json, "features_round"); kept here, outside the
# server, so that the evidence can be reproduced.
_NB_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))  # NB-201 paths node 0 -> 3 as gene positions


def nb201_effective_cell(genes: np.ndarray) -> np.ndarray:
    """(n, 13) features of the *effective* NB-201 cell (what a pruning runtime runs).

    An op is live when it lies on a path of non-'none' edges from node 0 to node 3.
    Columns: live count of skip, conv1x1, conv3x3, avgpool (4); dead ops; dead convs;
    output all-zero; live paths; shortest / longest live path; most convs on a live path;
    live edges into node 3; log1p of the live cell MACs.
    """
    g = np.asarray(genes, dtype=np.int64)
    act = g != 0
    r1 = act[:, 0]
    r2 = act[:, 1] | (act[:, 2] & r1)
    c2 = act[:, 5]
    c1 = act[:, 4] | (act[:, 2] & c2)
    reach = np.stack([np.ones_like(r1), r1, r2], axis=1)  # nodes 0..2 reachable from 0
    coreach = np.stack([c1, c2, np.ones_like(c1)], axis=1)  # nodes 1..3 reach node 3
    src = np.array([j for _, j in nb.EDGES])
    dst = np.array([i for i, _ in nb.EDGES]) - 1
    live = act & reach[:, src] & coreach[:, dst]
    dead = act & ~live
    conv = np.isin(g, (nb.OPS.index("nor_conv_1x1"), nb.OPS.index("nor_conv_3x3")))
    paths = np.stack([act[:, list(p)].all(1) for p in _NB_PATHS], axis=1)
    lengths = np.array([len(p) for p in _NB_PATHS])
    conv_on = np.stack([conv[:, list(p)].sum(1) for p in _NB_PATHS], axis=1)
    any_path = paths.any(1)
    macs, _ = nb._op_costs()
    cols = [(live & (g == k)).sum(1) for k in range(1, len(nb.OPS))]
    cols += [
        dead.sum(1),
        (dead & conv).sum(1),
        ~any_path,
        paths.sum(1),
        np.where(paths, lengths, 9).min(1) * any_path,
        np.where(paths, lengths, 0).max(1),
        np.where(paths, conv_on, 0).max(1),
        live[:, [3, 4, 5]].sum(1),
        np.log1p((macs[g] * live).sum(1)),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def _nb_cell_table() -> tuple[np.ndarray, np.ndarray]:
    radix = 5 ** np.arange(5, -1, -1, dtype=np.int64)
    codes = np.arange(5**6, dtype=np.int64)
    return radix, nb201_effective_cell((codes[:, None] // radix[None, :]) % 5)


def _fbnet_parts() -> np.ndarray:
    """(22, 9, 5): pointwise / depthwise MACs, params, activations, non-skip."""
    out = np.zeros((fb.NUM_BLOCKS, len(fb.OPS), 5))
    for j, (c_in, c_out, stride, size) in enumerate(fb.block_layout()):
        o = (size + stride - 1) // stride
        for k, op in enumerate(fb.OPS):
            macs, params = fb.block_cost(op, c_in, c_out, stride, size)
            spec = fb.parse_op(op)
            if spec is None:
                out[j, k] = macs, 0.0, params, c_out * o * o if macs else 0.0, 0.0
                continue
            mid = c_in * spec[1]
            dw = mid * spec[0] ** 2 * o * o
            out[j, k] = macs - dw, dw, params, mid * size * size + mid * o * o + c_out * o * o, 1
    return out


def fbnet_stage_costs(genes: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """(n, 7 * 5) per stage: log1p sums of pointwise / depthwise MACs, params, activations
    of the chosen ops, and the number of non-skip blocks."""
    g = np.asarray(genes, dtype=np.int64)
    per = parts[np.arange(fb.NUM_BLOCKS)[None, :], g]
    stage = np.eye(len(fb.STAGES))[
        np.repeat(np.arange(len(fb.STAGES)), [n for n, _, _ in fb.STAGES])
    ]
    sums = np.einsum("nbc,bs->nsc", per, stage)
    sums[:, :, :4] = np.log1p(sums[:, :, :4])
    return sums.reshape(len(g), -1).astype(np.float32)


def _ofa_parts() -> np.ndarray:
    """(R, 20, 3, 3, 4): pointwise(+SE) / depthwise MACs, params, activations per block."""
    out = np.zeros((len(ofa.RESOLUTIONS), ofa.NUM_BLOCKS, 3, 3, 4))
    for r, res in enumerate(ofa.RESOLUTIONS):
        size, c_in = ofa._half(res), ofa.FIRST_CHANNELS
        for s in range(ofa.NUM_STAGES):
            for b in range(ofa.MAX_DEPTH):
                stride = ofa.STRIDES[s] if b == 0 else 1
                block_in = c_in if b == 0 else ofa.WIDTHS[s]
                o = ofa._half(size) if stride == 2 else size
                for ki, k in enumerate(ofa.KERNELS):
                    for ei, e in enumerate(ofa.EXPANDS):
                        macs, params = ofa.block_cost(
                            block_in, ofa.WIDTHS[s], k, e, stride, size, ofa.USE_SE[s]
                        )
                        mid = ofa.make_divisible(block_in * e)
                        dw = mid * k * k * o * o
                        act = mid * size * size + mid * o * o + ofa.WIDTHS[s] * o * o
                        out[r, 4 * s + b, ki, ei] = macs - dw, dw, params, act
                if b == 0 and stride == 2:
                    size = ofa._half(size)
            c_in = ofa.WIDTHS[s]
    return out


def ofa_stage_costs(space, genes: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """(n, 5 * 4) per stage: log1p sums of pointwise(+SE) / depthwise MACs, params and
    activations of the active blocks."""
    g = genes.astype(np.int64)
    per = (
        parts[
            g[:, 0][:, None],
            np.arange(ofa.NUM_BLOCKS)[None, :],
            g[:, ofa.KERNEL_GENES],
            g[:, ofa.EXPAND_GENES],
        ]
        * space.active_mask(genes)[:, :, None]
    )
    sums = per.reshape(len(g), ofa.NUM_STAGES, ofa.MAX_DEPTH, 4).sum(2)
    return np.log1p(sums).reshape(len(g), ofa.NUM_STAGES * 4).astype(np.float32)


def apply_variant(space: str, variant: str) -> ProxyConfig:
    """Patch the space's features for ``variant``; return the proxy configuration.

    ``variant``: ``FEATURES[:key=value,...]`` with FEATURES ``base`` (the space's own),
    ``cell`` / ``cell<i.j..>`` (NB-201: + effective-cell columns, all or a subset) or
    ``stage`` (FBNet / OFA: + per-stage cost sums); ``key=value``: ProxyConfig fields.
    """
    cls = type(get_space(space))
    own = cls.features
    feats, _, hp = variant.partition(":")
    if feats.startswith("cell") and space == "nasbench201":
        radix, table = _nb_cell_table()
        keep = [int(c) for c in feats[4:].split(".")] if feats != "cell" else list(range(13))
        cls.features = lambda self, g: np.concatenate(
            [own(self, g), table[np.asarray(g, np.int64) @ radix][:, keep]], axis=1
        )
    elif feats == "stage" and space == "fbnet":
        parts = _fbnet_parts()
        cls.features = lambda self, g: np.concatenate(
            [own(self, g), fbnet_stage_costs(g, parts)], axis=1
        )
    elif feats == "stage" and space == "ofa_mbv3":
        parts = _ofa_parts()

        def with_stages(self, g):
            x = own(self, g)
            return np.concatenate([x[:, :-3], ofa_stage_costs(self, g, parts), x[:, -3:]], 1)

        cls.features = with_stages
    elif feats != "base":
        raise ValueError(f"unknown features '{feats}' for {space}")
    config = ProxyConfig()
    for item in filter(None, hp.split(",")):
        key, value = item.split("=")
        config = replace(config, **{key: type(getattr(config, key))(value)})
    return config


def run(space: str, variant: str, lfo: bool) -> dict:
    config = apply_variant(space, variant)
    split = HELP_SPLITS[space]
    start = time.perf_counter()
    out: dict = {"space": space, "variant": variant, "proxy": config.to_dict()}
    opts = {
        "help10": EvalOptions(space, 10, "help", 1, 0.2, CACHE, config),
        "random10": EvalOptions(space, 10, "random", 8, 0.2, CACHE, config),
        "random20": EvalOptions(space, 20, "random", 8, 0.2, CACHE, config),
    }
    model, allowed, score = _model_for(opts["help10"], split.train)
    out["num_features"] = int(model.features(model.space.table.genes[:1]).shape[1])
    for name, o in opts.items():
        det = {
            d: adapt_device(model, d, o, allowed, score, split.references) for d in split.validation
        }
        out[name] = {d: v["spearman"] for d, v in det.items()}
        out[name + "_mean"] = float(np.mean(list(out[name].values())))
        out[name + "_cover80"] = float(np.mean([v["cover80"] for v in det.values()]))
    out["validation_mean_n10"] = (out["help10_mean"] + 8 * out["random10_mean"]) / 9
    if lfo:
        lo = EvalOptions(space, 10, "random", 5, 0.2, CACHE, config)
        dev, cover = {}, []
        for fam, basis, scored in nontest_family_splits(space):
            m, allowed, score = _model_for(lo, basis)
            for d in scored:
                r = adapt_device(m, d, lo, allowed, score)
                dev[d] = r["spearman"]
                cover.append(r["cover80"])
            out.setdefault("lfo_families", {})[fam] = float(np.mean([dev[d] for d in scored]))
        out["lfo"] = dev
        out["lfo_nontest_mean"] = float(np.mean(list(dev.values())))
        out["lfo_cover80"] = float(np.mean(cover))
    out["seconds"] = time.perf_counter() - start
    return out


def main() -> None:
    p = parser(__doc__, json_required=True, json_aliases=("--out",))
    p.add_argument("space")
    p.add_argument("variant", help="base|cell|cell<i.j>|stage[:key=value,...] (ProxyConfig)")
    p.add_argument("--no-lfo", action="store_true")
    p.add_argument(
        "--kinds",
        default=None,
        help="comma-separated candidate head kinds (default: the space's, heads.candidate_kinds)",
    )
    p.add_argument(
        "--powerlaw-columns",
        default=None,
        help="descriptor columns of the powerlaw head, e.g. '0+1,3,4'",
    )
    p.add_argument(
        "--ensemble-temperature",
        type=float,
        default=None,
        help="selection.ENSEMBLE_TEMPERATURE (pseudo-BMA weights)",
    )
    p.add_argument(
        "--ensemble-max-members", type=int, default=None, help="selection.ENSEMBLE_MAX_MEMBERS"
    )
    p.add_argument(
        "--sigma-inflation",
        type=float,
        default=None,
        help="selection.SIGMA_INFLATION (interval width)",
    )
    a = p.parse_args()
    from oracle_server.predictor import LatencyModel, selection

    if a.sigma_inflation is not None:
        selection.SIGMA_INFLATION = a.sigma_inflation
    if a.ensemble_temperature is not None:
        selection.ENSEMBLE_TEMPERATURE = a.ensemble_temperature
    if a.ensemble_max_members is not None:
        selection.ENSEMBLE_MAX_MEMBERS = a.ensemble_max_members
    if a.kinds:
        kinds = tuple(a.kinds.split(","))
        LatencyModel.head_kinds = property(lambda _self: kinds)  # type: ignore[assignment]
    if a.powerlaw_columns:
        from oracle_server.predictor import heads

        heads.scaling.POWERLAW_COLUMNS = tuple(
            tuple(int(c) for c in part.split("+")) for part in a.powerlaw_columns.split(",")
        )
    r = run(a.space, a.variant, not a.no_lfo)
    r["kinds"], r["powerlaw_columns"] = a.kinds, a.powerlaw_columns
    r["ensemble_temperature"] = a.ensemble_temperature
    r["ensemble_max_members"] = a.ensemble_max_members
    r["sigma_inflation"] = a.sigma_inflation
    write_json(a.json, r, indent=1)
    print(json.dumps({k: v for k, v in r.items() if k.endswith("mean") or k == "seconds"}))


if __name__ == "__main__":
    main()
