"""Would a per-block look-up table (FBNet's own latency model) rank FBNet on this CPU?

FBNet predicts a network's latency as the sum of its blocks' latencies, each measured alone.
That would be a device-specific head for hardware unlike every basis device, if the sum
ranked whole networks well here. This measures, with the interleaved harness:

* ``isolated``: each of the 22 x 9 (position, op) blocks alone on its input shape, plus the
  stem and the head: 200 short timings; the table's sum per architecture;
* ``marginal``: whole networks that differ from a base network (every block ``k3_e1``) in one
  block (22 x 8 + 1 = 177 networks): the base latency plus each block's in-network
  difference, which keeps the neighbours' cache state;
* ``--validate`` random architectures measured as whole networks;

and prints the Spearman of each table's sum, of FLOPs and of memory traffic (the
``activations`` descriptor) against them, and the share of table sums within +-10 %.

    python -m benchmarks.studies.block_lut --threads 1 --seed 11
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from torch import nn

from benchmarks._cli import RESULTS, load_average, parser, write_json
from client_sdk.measure.fbnet import FBNetBlock, FBNetNetwork, build
from client_sdk.measure.harness import Harness, HarnessConfig
from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import descriptor_names, descriptors
from client_sdk.spaces.fbnet import INPUT_RESOLUTION, NUM_BLOCKS, OPS, block_layout
from oracle_server.predictor.heads import spearman

ITEMS = [(j, c) for j in range(NUM_BLOCKS) for c in range(len(OPS))]


def _tail(net: FBNetNetwork) -> nn.Sequential:
    """What ``net`` runs after its blocks (1x1 conv to 1984, pooling, classifier)."""
    return nn.Sequential(net.head, net.global_pool, nn.Flatten(1), net.classifier).eval()


def block_builder(space, row, batch_size, device):
    """Row ``[k]``: block ``ITEMS[k]`` on its input shape; then the network's stem; then
    its tail (the builder's own modules, so the table times what a network runs)."""
    k = int(row[0])
    if k < len(ITEMS):
        j, c = ITEMS[k]
        c_in, c_out, stride, size = block_layout()[j]
        return FBNetBlock(OPS[c], c_in, c_out, stride).eval(), torch.randn(1, c_in, size, size)
    net = build(np.zeros(NUM_BLOCKS, dtype=np.int64)).eval()
    if k == len(ITEMS):
        return net.stem, torch.randn(1, 3, INPUT_RESOLUTION, INPUT_RESOLUTION)
    c_in, c_out, stride, size = block_layout()[-1]
    side = (size + stride - 1) // stride
    return _tail(net), torch.randn(1, c_out, side, side)


def main() -> int:
    p = parser(__doc__.splitlines()[0], json_default=RESULTS / "studies" / "block_lut.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--validate", type=int, default=100)
    a = p.parse_args()
    sp = get_space("fbnet")
    cfg = HarnessConfig(threads=a.threads, seed=a.seed)
    t0 = time.perf_counter()
    blocks = (
        Harness(cfg, builder=block_builder)
        .measure_interleaved(sp, np.arange(len(ITEMS) + 2)[:, None])
        .latency_ms
    )
    t_blocks = time.perf_counter() - t0
    table = blocks[: len(ITEMS)].reshape(NUM_BLOCKS, len(OPS))
    fixed = blocks[-2] + blocks[-1]
    base = np.zeros(NUM_BLOCKS, dtype=np.int64)
    variants = [base]
    for j, c in ITEMS:
        if c != 0:
            g = base.copy()
            g[j] = c
            variants.append(g)
    t0 = time.perf_counter()
    marg = Harness(cfg).measure_interleaved(sp, np.array(variants)).latency_ms
    t_marg = time.perf_counter() - t0
    delta = np.zeros((NUM_BLOCKS, len(OPS)))
    for g, v in zip(variants[1:], marg[1:], strict=True):
        j = int(np.flatnonzero(g)[0])
        delta[j, g[j]] = v - marg[0]
    genes = sp.sample(a.validate, np.random.default_rng(a.seed + 1))
    t0 = time.perf_counter()
    y = Harness(cfg).measure_interleaved(sp, genes).latency_ms
    t_val = time.perf_counter() - t0
    pos = np.arange(NUM_BLOCKS)
    isolated = fixed + table[pos, genes].sum(1)
    marginal = marg[0] + delta[pos, genes].sum(1)
    act = descriptors("fbnet", genes)[:, descriptor_names("fbnet").index("activations")]
    out = {
        "threads": a.threads,
        "seed": a.seed,
        "validate": a.validate,
        "spearman": {
            "isolated_lut": spearman(isolated, y),
            "marginal_lut": spearman(marginal, y),
            "flops": spearman(sp.flops(genes), y),
            "activations": spearman(act, y),
        },
        "within10": {
            "isolated_lut": float(np.mean(np.abs(isolated / y - 1) < 0.1)),
            "marginal_lut": float(np.mean(np.abs(marginal / y - 1) < 0.1)),
        },
        "median_ratio_measured_over_sum": {
            "isolated_lut": float(np.median(y / isolated)),
            "marginal_lut": float(np.median(y / marginal)),
        },
        "block0_isolated_ms": dict(zip(OPS, table[0].round(3).tolist(), strict=True)),
        "block0_in_network_delta_ms": dict(zip(OPS, delta[0].round(3).tolist(), strict=True)),
        "seconds": {"blocks": t_blocks, "marginal": t_marg, "validate": t_val},
        "loadavg": load_average(),
    }
    print(json.dumps(out, indent=1))
    write_json(a.json, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
