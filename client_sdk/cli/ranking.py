"""``oracle rank`` (``--models``: ``client_sdk.cli.networks``), ``oracle suggest``,
``oracle compare``."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np

from client_sdk.cli._common import _emit, _fail, _native_archs, _read_archs, _table
from client_sdk.client import OracleClient


def cmd_rank(args: argparse.Namespace, c: OracleClient) -> None:
    if not args.device:
        _fail("rank", "give the devices: --device D (repeatable) or --devices D [D ...]")
    if args.models:
        from client_sdk.cli.networks import cmd_rank_models

        cmd_rank_models(args, c)
        return
    if not args.space:
        _fail("rank", "give --space SPACE (with architectures), or --models FILE")
    archs = _read_archs(args.file)
    res = c.rank(
        args.space,
        _native_archs(archs),
        args.device,
        top_k=args.top_k,
        max_latency_ms=args.max_latency_ms,
        return_uncertainty=args.uncertainty,
    )
    data = {
        d: [
            {
                "rank": r + 1,
                "index": int(i),
                "arch": archs[i],
                "latency_ms": float(res.latency_ms[d][i]),
            }
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
            names,
            rho,
            args.plot,
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
        rows.append(
            {
                "device": name,
                "most_similar": names[best],
                "rho_max": float(rho[i, best]),
                "least_similar": names[worst],
                "rho_min": float(rho[i, worst]),
            }
        )
    return _table(rows, ("device", "most_similar", "rho_max", "least_similar", "rho_min"))
