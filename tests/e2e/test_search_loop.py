"""Closed-loop search against a real server: AddMeasurements refits the head mid-search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client_sdk.cli import main
from client_sdk.search import search
from client_sdk.spaces import get_space
from tests.helpers import unique_name

SPACE = get_space("nasbench201")
DEVICE = "titanx_32"  # a held-out validation device of the table (not a HELP test device)


def _register(client, name: str) -> None:
    genes = SPACE.sample(10, rng=5)
    lat = SPACE.table.device_column(DEVICE)[SPACE.table_rows(genes)]
    client.register_device(name, "nasbench201", (genes, lat))


def test_closed_loop_refits_the_device_head(client) -> None:
    name = unique_name("loop")
    _register(client, name)
    col = SPACE.table.device_column(DEVICE)
    asked: list[np.ndarray] = []

    def measure(genes: np.ndarray) -> np.ndarray:
        asked.append(genes)
        return col[SPACE.table_rows(genes)]

    res = search(client, "nasbench201", [name], objective="cifar10", evaluations=400,
                 population=40, progress=False, measure=measure, measure_budget=8, rounds=2)
    assert [len(a) for a in asked] == [4, 4]
    dev = client.get_device(name, "nasbench201")
    assert dev.num_samples == 18  # 10 at registration + 8 measured during the search
    measured = np.isfinite(res.archive["measured_ms"][name])
    rows = SPACE.table_rows(res.archive["genes"][measured])
    np.testing.assert_allclose(res.archive["latency_ms"][name][measured], col[rows])
    # the archive's other predictions are those of the refit head
    free = res.archive["genes"][~measured][:50]
    now = client.rank("nasbench201", free, [name]).latency_ms[name]
    np.testing.assert_allclose(res.archive["latency_ms"][name][~measured][:50], now, rtol=1e-6)
    assert res.num_evaluations == 400 and len(res.front) > 0


def test_cli_search_measure_local(server, capsys, tmp_path: Path) -> None:
    from client_sdk import OracleClient

    name = unique_name("local")
    with OracleClient(f"127.0.0.1:{server.port}") as c:
        _register(c, name)  # stands in for `oracle device onboard` of this machine
    code = main(["--target", f"127.0.0.1:{server.port}", "--json", "search", "--space",
                 "nasbench201", "--device", name, "--evaluations", "120", "--population",
                 "24", "--measure-local", "--budget", "2", "--rounds", "1", "--threads", "1",
                 "--resolution", "auto", "--out", str(tmp_path / "s")])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(out.out)
    assert data["measured"] == 2 and data["measure_s"] > 0
    with OracleClient(f"127.0.0.1:{server.port}") as c:
        assert c.get_device(name, "nasbench201").num_samples == 12
    with pytest.raises(SystemExit, match="needs --measure-local"):
        main(["--target", f"127.0.0.1:{server.port}", "search", "--device", name,
              "--evaluations", "50", "--budget", "3"])
