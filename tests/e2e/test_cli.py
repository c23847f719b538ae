"""The `oracle` CLI against a real in-process server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client_sdk.spaces import get_space
from tests.helpers import unique_name

SPACE = get_space("nasbench201")


def test_spaces_and_devices(run) -> None:
    code, out, _ = run("spaces")
    assert code == 0 and "nasbench201" in out and "table_archs" in out
    code, out, _ = run("--json", "devices", "--space", "nasbench201")
    devices = json.loads(out)
    assert code == 0 and "nasbench201/pixel3" in {d["full_name"] for d in devices}
    code, out, _ = run("device", "show", "nasbench201/pixel3")
    assert code == 0 and "head_kind" in out


def test_register_rank_compare_delete(run, tmp_path: Path) -> None:
    genes = SPACE.sample(10, rng=11)
    lat = SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(
        "arch,latency_ms\n"
        + "".join(f"{a},{v}\n" for a, v in zip(SPACE.format_many(genes), lat, strict=True))
    )
    name = unique_name("cli")
    code, out, err = run("--json", "device", "register", "--name", name, "--space",
                         "nasbench201", "--csv", str(csv_path), "--contract", '{"threads": 4}')
    assert code == 0, err
    dev = json.loads(out)
    assert dev["num_samples"] == 10 and dev["contract"]["threads"] == 4
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(SPACE.format_many(SPACE.sample(20, rng=12))) + "\n")
    code, out, err = run("--json", "rank", "--space", "nasbench201", "--device", name,
                         "--device", "pixel3", "--file", str(archs), "--top-k", "3")
    assert code == 0, err
    ranked = json.loads(out)
    assert [len(v) for v in ranked.values()] == [3, 3]
    assert ranked[name][0]["latency_ms"] <= ranked[name][1]["latency_ms"]
    code, out, _ = run("compare", name, "pixel3", "--space", "nasbench201")
    assert code == 0 and "spearman_predicted" in out
    code, out, _ = run("device", "delete", name, "--space", "nasbench201")
    assert code == 0 and "deleted" in out


def test_suggest_and_errors(run) -> None:
    code, out, _ = run("suggest", "--space", "nasbench201", "-n", "5")
    archs = out.strip().splitlines()
    assert code == 0 and len(archs) == 5
    assert SPACE.parse_many(archs).shape == (5, 6)
    code, _, err = run("device", "show", "nasbench201/ghost")
    assert code == 1 and "NOT_FOUND" in err and "ghost" in err
    code, _, err = run("rank", "--space", "nope", "--device", "x", "--file", "/dev/null")
    assert code == 1 and "NOT_FOUND" in err


def test_search_writes_front(run, tmp_path: Path) -> None:
    out = tmp_path / "s"
    code, stdout, err = run("search", "--space", "nasbench201", "--device", "pixel3",
                            "--objective", "cifar10", "--evaluations", "300",
                            "--population", "32", "--out", str(out), "--plot")
    assert code == 0, err
    front = json.loads((out / "front.json").read_text())
    assert front and set(front[0]) == {"arch", "accuracy", "latency_ms"}
    assert set(front[0]["latency_ms"]) == {"pixel3"}
    SPACE.parse_many([row["arch"] for row in front])
    assert (out / "front.csv").read_text().startswith("arch")
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "front.json" in stdout


def test_rank_native_forms_and_quiet(run, tmp_path: Path) -> None:
    genes = SPACE.sample(30, rng=21)
    idx = SPACE.table.index[SPACE.table_rows(genes)]
    files = {"strings": "\n".join(SPACE.format_many(genes)),
             "indices": "\n".join(map(str, idx)),
             "json": "\n".join(json.dumps(int(i)) for i in idx)}
    ranked = {}
    for kind, text in files.items():
        path = tmp_path / f"{kind}.txt"
        path.write_text(text + "\n")
        code, out, err = run("--json", "--quiet", "rank", "--space", "nasbench201",
                             "--device", "pixel3", "--file", str(path))
        assert code == 0, err
        ranked[kind] = [(r["index"], r["latency_ms"]) for r in json.loads(out)["pixel3"]]
    assert ranked["strings"] == ranked["indices"] == ranked["json"]
    bad = tmp_path / "bad.txt"
    bad.write_text("3\n15625\n")
    code, _, err = run("rank", "--space", "nasbench201", "--device", "pixel3", "--file", str(bad))
    assert code == 1 and "INVALID_ARGUMENT" in err and "archs[1]" in err and "15625" in err


def test_compare_all_heatmap(run, tmp_path: Path) -> None:
    png = tmp_path / "sim.png"
    code, out, err = run("--json", "compare", "--all", "--space", "nasbench201",
                         "--plot", str(png))
    assert code == 0, err
    data = json.loads(out)
    names, rho = data["devices"], np.array(data["spearman_predicted"])
    assert len(names) >= 3 and rho.shape == (len(names), len(names))
    np.testing.assert_allclose(np.diag(rho), 1.0)
    np.testing.assert_allclose(rho, rho.T)
    assert sorted(data["cluster_order"]) == sorted(names)
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the matrix is CompareDevices' spearman_predicted, pair by pair
    a, b = names[0], names[-1]
    code, out, _ = run("--json", "compare", a, b, "--space", "nasbench201")
    assert abs(json.loads(out)["spearman_predicted"] - rho[0, -1]) < 1e-6
    with pytest.raises(SystemExit, match="two devices"):
        run("compare", "--space", "nasbench201")


def test_search_plot_with_budget_log_axis(run, tmp_path: Path) -> None:
    out = tmp_path / "s"
    code, _, err = run("search", "--space", "nasbench201", "--device", "pixel3",
                       "--device", "1080ti_1", "--evaluations", "200", "--population", "32",
                       "--max-latency-ms", "15", "--out", str(out), "--plot", "--log-latency",
                       "--top-worth", "5")
    assert code == 0, err
    assert err == ""  # stderr is not a terminal: no progress frames
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_register_from_csv_of_nats_indices(run, tmp_path: Path) -> None:
    idx = [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]
    lat = SPACE.table.device_column("raspi4")[SPACE.rows_of_index(idx)]
    csv_path = tmp_path / "idx.csv"
    csv_path.write_text("arch,latency_ms\n" + "".join(
        f"{i},{v}\n" for i, v in zip(idx, lat, strict=True)))
    name = unique_name("cli-idx")
    code, out, err = run("--json", "device", "register", "--name", name, "--space",
                         "nasbench201", "--csv", str(csv_path))
    assert code == 0, err
    assert json.loads(out)["num_samples"] == 10
    assert run("device", "delete", name, "--space", "nasbench201")[0] == 0


def test_onboard_adaptive_with_real_measurements(run) -> None:
    """`oracle device onboard --target-spearman`: real (tiny) torch timings, rounds of
    adaptive suggestions until the budget, the retest ceiling in the JSON."""
    name = unique_name("onb")
    code, out, err = run("--json", "device", "onboard", "--name", name, "--space",
                         "nasbench201", "--samples", "4", "--threads", "1", "--repeats", "2",
                         "--rounds", "2", "--retest", "4", "--retest-threshold", "-1",
                         "--target-spearman", "1.0", "--max-samples", "11", "--round-size", "2")
    assert code == 0, err
    report = json.loads(out)
    steps = [p["samples"] for p in report["progress"]]
    # 4 references + the 4 retest archs registered with them, then rounds of 2 until the
    # budget of 11, unless the (tiny-sample) estimate hits 1.0 first
    assert steps == [8, 10, 11][: len(steps)]
    n = steps[-1]
    assert n == 11 or report["target_reached"]
    assert report["registered_retest"] == 4
    # ... plus the session check's pass of the first 8, added at the end
    assert report["session_added"] == 8
    assert report["num_samples"] == n + 8 and len(report["reference_archs"]) == n
    assert len({*report["reference_archs"]}) == n  # the adaptive rounds never repeat an arch
    assert report["retest_archs"] == 4 and report["rounds"] == 2
    # the session check measured the 4 first references + 4 retest archs again at the end
    assert report["session_archs"] == 8 and len(report["session_latency_ms"]) == 8
    assert report["session_scale"] > 0 and "session check on 8 archs" in err
    # the retest is the split-half Spearman of the 4 retest archs, stepped up (Spearman-Brown):
    # 4 ranks give a split-half Spearman of 1 - S/10 (S: the even sum of squared rank
    # differences); a constant half leaves it undefined (None)
    rho = report["retest_spearman"]
    if rho is None:
        assert report["ceiling"] is None
    else:
        possible = [r if r <= 0 else 2 * r / (1 + r) for r in (1 - k / 10 for k in range(0, 21, 2))]
        assert min(abs(rho - r) for r in possible) < 1e-9, rho
        assert report["ceiling"] == pytest.approx(np.sqrt(max(rho, 0.0)))  # sqrt(retest)
    assert "registered" in err and "expected Spearman" in err
    code, out, _ = run("--json", "device", "show", name, "--space", "nasbench201")
    assert code == 0 and json.loads(out)["num_samples"] == n + 8
    code, out, _ = run("suggest", "--space", "nasbench201", "-n", "3", "--device", name)
    assert code == 0 and len(out.split()) == 3
    assert not set(out.split()) & set(report["reference_archs"])
    run("device", "delete", name, "--space", "nasbench201")
