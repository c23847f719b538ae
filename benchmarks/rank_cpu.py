"""Rank's server-side cost on the open spaces, in process (issue #15): CPU and wall time.

``OracleServicer.Rank`` (decode the packed request, rank, serialise the response) for the
issue's rows: FBNet / OFA 10k x 1 and x 6 table devices, 100k x 1, and devices registered
from 10 measurements exactly as ``benchmarks.serving`` registers them (same seed: same head
kinds). Fresh random architectures per call. Times per call, median of ``--reps``: wall
(``perf_counter``) and this process's CPU (``process_time``: the calling thread plus the
tree-table pool threads), after the allocator tuning and the numba kernels are in place,
as in the server.

On a shared machine wall times move with other jobs; CPU times much less. For a same-run
A/B run it once per checkout, alternating (``--code DIR``: the measurement runs in a
subprocess started in that checkout, so it imports DIR's ``oracle_server`` and
``client_sdk``):

    python -m benchmarks.rank_cpu [--threads 2] [--code DIR] [--json out.json]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Only the standard library at module level: with ``--code`` this file runs in a subprocess
# started in another checkout (``python -c`` puts its working directory first on the path),
# whose ``benchmarks`` package may differ from this one.
CHILD = (
    "import json, runpy, sys; "
    "ns = runpy.run_path(sys.argv[1], run_name='rank_cpu_child'); "
    "res = ns['measure'](**json.loads(sys.argv[2])); "
    "open(sys.argv[3], 'w').write(json.dumps(res))"
)


def main(argv: list[str] | None = None) -> int:
    from benchmarks._cli import ROOT, finish, parser

    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout to import")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "bench-cache")
    ap.add_argument("--threads", type=int, default=2, help="tree-table threads (rank-threads)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument(
        "--head-kinds", action="store_true", help="also one FBNet device per candidate head kind"
    )
    args = ap.parse_args(argv)
    code = args.code.resolve()
    settings = {
        "code": str(code),
        "cache_dir": str(args.cache_dir.resolve()),
        "threads": args.threads,
        "reps": args.reps,
        "head_kinds": args.head_kinds,
    }
    if code == ROOT:
        res = measure(**settings)
    else:
        with tempfile.TemporaryDirectory(prefix="rank-cpu-") as tmp:
            out = Path(tmp) / "result.json"
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(Path(__file__).resolve()),
                    json.dumps(settings),
                    str(out),
                ],
                cwd=code,
                check=True,
            )
            res = json.loads(out.read_text())
    return finish(args.json, res)


def measure(code: str, cache_dir: str, threads: int, reps: int, head_kinds: bool) -> dict:
    """The rows, measured with the ``oracle_server`` this process imports (``code``: the
    checkout it comes from, recorded with its git commit)."""
    import numpy as np

    from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
    from oracle_server import codec
    from oracle_server.oracle import Oracle
    from oracle_server.predictor import build_model
    from oracle_server.predictor import tree_tables as tt
    from oracle_server.runtime import tune_allocator
    from oracle_server.servicer import OracleServicer
    from oracle_server.store import REGISTERED, Device, DeviceStore

    tune_allocator()
    tt.set_threads(threads)
    tt.start_kernel(wait=True)
    spaces = ("fbnet", "ofa_mbv3")
    models = {s: build_model(s, (), cache_dir=Path(cache_dir)) for s in spaces}
    store = DeviceStore.in_memory(models)
    rng = np.random.default_rng(7)  # as serving.bench_registered
    registered = []
    for space, source in (("fbnet", "samsung_a50"), ("ofa_mbv3", "v100_32")):
        sp = models[space].space
        truth = sp.table.device_column(source)
        rows = rng.choice(len(truth), 10, replace=False)
        cases = {
            f"from {source}": truth[rows] * rng.uniform(0.9, 1.1, 10),
            "made-up latencies": rng.uniform(1.0, 100.0, 10),
        }
        for label, lat in cases.items():
            head = models[space].fit_head(sp.table.genes[rows], lat)
            name = f"reg-{len(registered)}"
            store.add_device(Device(space, name, REGISTERED, head))
            registered.append((space, name, f"registered ({label}, head {head.kind})"))
    # one device per head kind (each candidate kind alone, fit on the same 10 FBNet
    # measurements): what each kind costs Rank
    from oracle_server.predictor.head_fit import HeadFit
    from oracle_server.predictor.heads import HEAD_KINDS, fit_candidate

    per_kind = []
    if head_kinds:
        fb = models["fbnet"]
        sp = fb.space
        rows = np.random.default_rng(3).choice(len(sp.table.genes), 10, replace=False)
        genes = sp.table.genes[rows]
        y = sp.table.device_column("samsung_a50")[rows]
        feats = fb.features(genes)
        basis = fb.basis(genes, feats)
        for kind in HEAD_KINDS:
            cand = fit_candidate(
                kind,
                basis,
                feats,
                y,
                fb.proxy.linear_weights,
                fb.cost_matrix,
                fb.descriptors(genes),
                fb.prior,
            )
            head = HeadFit(
                kind,
                10,
                0.9,
                0.9,
                0.0,
                cand.params,
                {"anchor": -1, "n": 10, "u_mean": 1.0, "u_sxx": 2.0, "s": 0.1},
            )
            store.add_device(Device("fbnet", f"kind-{kind}", REGISTERED, head))
            per_kind.append(kind)
    oracle = Oracle(store)
    svc = OracleServicer(lambda: oracle, 1_000_000)
    ctx = type("Ctx", (), {"is_active": lambda self: True})()
    sample_rng = np.random.default_rng(0)

    def row(label: str, space: str, n: int, devices: list[str], reps: int) -> dict:
        sp = models[space].space
        reqs = [
            pb.RankRequest(
                space=space, archs=codec.archs_message(sp.sample(n, sample_rng)), devices=devices
            ).SerializeToString()
            for _ in range(reps + 1)
        ]
        walls, cpus = [], []
        for i, raw in enumerate(reqs):
            c, w = time.process_time(), time.perf_counter()
            svc.Rank(pb.RankRequest.FromString(raw), ctx).SerializeToString()
            if i:  # the first call warms up
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
        out = {
            "row": label,
            "space": space,
            "archs": n,
            "devices": len(devices),
            "wall_ms": float(np.median(walls)) * 1e3,
            "cpu_ms": float(np.median(cpus)) * 1e3,
        }
        print(
            f"  {label:58s} wall {out['wall_ms']:8.2f} ms  cpu {out['cpu_ms']:8.2f} ms", flush=True
        )
        return out

    load_before = list(os.getloadavg())
    git = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True
        ).stdout.strip()
        or Path(code).name
    )
    print(f"code {code} ({git}), {threads} thread(s), load {load_before}", flush=True)
    rows = []
    for space, name, label in registered:
        rows.append(row(f"{space} 10k x 1 {label}", space, 10_000, [name], reps))
    for kind in per_kind:
        rows.append(row(f"fbnet 10k x 1 head kind {kind}", "fbnet", 10_000, [f"kind-{kind}"], reps))
    for space in spaces:
        devs = list(models[space].space.table.devices[:6])
        rows.append(row(f"{space} 10k x 1", space, 10_000, devs[:1], reps))
        rows.append(row(f"{space} 10k x 6", space, 10_000, devs, max(reps // 2, 3)))
        rows.append(row(f"{space} 100k x 1", space, 100_000, devs[:1], max(reps // 4, 3)))
    res = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "code": code,
            "git": git,
            "threads": threads,
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": list(os.getloadavg()),
        },
        "rows": rows,
    }
    return res


if __name__ == "__main__":
    raise SystemExit(main())
