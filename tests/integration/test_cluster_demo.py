"""The local multi-replica recipe (deploy/local/cluster_demo.sh) with real servers: a device
registered through one replica is ranked by another (typically within 1 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client_sdk import DeviceNotFound, OracleClient
from client_sdk.spaces import get_space
from tests.helpers import (
    PROPAGATION_DEADLINE_S,
    REPO,
    TEST_CACHE,
    free_port_block,
    nb201_non_train_devices,
    postgres_available,
    unique_name,
)

PG_SKIP = postgres_available()
SCRIPT = REPO / "deploy" / "local" / "cluster_demo.sh"


def _context(lines: list[str], tmp_path: Path) -> str:
    """The demo's output so far and the last lines of each server's log."""
    out = ["demo output:", *lines]
    for log in sorted(tmp_path.glob("oracle-cluster.*/server-*.log")):
        out += [f"--- {log.name}", *log.read_text(errors="replace").splitlines()[-15:]]
    return "\n".join(out)


@pytest.mark.postgres
@pytest.mark.skipif(PG_SKIP is not None, reason=str(PG_SKIP))
def test_cluster_demo_replicas_share_devices(tmp_path: Path) -> None:
    grpc_base = free_port_block(6)  # gRPC ports, then the metrics ports: one block
    metrics_base = grpc_base + 3
    env = {
        **os.environ,
        "ORACLE_SPACES": "nasbench201",
        "ORACLE_HOLDOUT_DEVICES": ",".join(nb201_non_train_devices()),
        "ORACLE_CACHE_DIR": str(TEST_CACHE),
        "ORACLE_SYNC_INTERVAL_S": "0.2",
        "TMPDIR": str(tmp_path),
    }
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--replicas", "3", "--base-port", str(grpc_base),
         "--metrics-base-port", str(metrics_base), "--duration", "120", "--grace", "2",
         "--keep",  # the servers' logs stay under tmp_path, for the failure message
         "--server", str(bin_dir / "oracle-server"), "--python", sys.executable],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("client target:"):
                break
        assert any("SERVING" in ln for ln in lines), "\n".join(lines)
        targets = [f"127.0.0.1:{grpc_base + i}" for i in range(3)]
        space = get_space("nasbench201")
        genes = space.sample(10, rng=5)
        lat = space.table.device_column("raspi4")[space.table_rows(genes)]
        name = unique_name("demo")
        with OracleClient(targets[0]) as a, OracleClient(targets[2]) as c:
            a.register_device(name, "nasbench201", (genes, lat))
            t0 = time.monotonic()
            while True:
                try:
                    res = c.rank("nasbench201", space.sample(100, rng=1), name)
                    break
                except DeviceNotFound:
                    assert time.monotonic() - t0 < PROPAGATION_DEADLINE_S, "replica 2: never"
                    time.sleep(0.02)
            assert res.latency_ms[name].shape == (100,)
            with OracleClient(targets[1]) as b:
                while True:  # the third replica too, within the same second
                    try:
                        assert b.get_device(name, "nasbench201").num_samples == 10
                        break
                    except DeviceNotFound:
                        assert time.monotonic() - t0 < PROPAGATION_DEADLINE_S, "replica 1: never"
                        time.sleep(0.02)
            a.delete_device(name, "nasbench201")
    except Exception as exc:  # say what the servers said
        raise AssertionError(_context(lines, tmp_path)) from exc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode in (0, 130), "\n".join(lines)
