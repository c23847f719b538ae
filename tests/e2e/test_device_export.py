"""`oracle device export` -> measure the ONNX files (here with onnxruntime itself, as a user's
toolchain would) -> `oracle device register --csv`, against a real in-process server; and
every bad measurements CSV refused, naming the line, unless --skip-bad-rows."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from client_sdk.cli import EXPORT_KIND, main  # noqa: E402
from client_sdk.spaces import get_space  # noqa: E402
from tests.helpers import unique_name  # noqa: E402

SPACE = get_space("nasbench201")
SAMPLES, RETEST = 6, 4


@pytest.fixture(scope="module")
def kit(server, tmp_path_factory) -> Path:
    """An export of 6 references + 4 retest archs, its CSV filled by timing each file with
    an onnxruntime session (1 thread, median of 15 runs), and the contract completed."""
    out = tmp_path_factory.mktemp("kit") / "nb201"
    cache = tmp_path_factory.mktemp("onnx-cache")
    code = main(["--target", f"127.0.0.1:{server.port}", "--json", "device", "export",
                 "--space", "nasbench201", "--samples", str(SAMPLES), "--retest", str(RETEST),
                 "--format", "onnx", "--out", str(out), "--onnx-cache", str(cache)])
    assert code == 0
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    for row in rows:
        row["latency_ms"] = f"{time_onnx(out / row['file']):.6f}"
    write_csv(out / "measurements.csv", rows)
    contract = json.loads((out / "contract.json").read_text())
    contract.update(threads=1, runtime="onnxruntime", runtime_version=ort.__version__,
                    hardware="the CI machine")
    (out / "contract.json").write_text(json.dumps(contract))
    return out


def time_onnx(path: Path) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    times = []
    for i in range(18):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def write_csv(path: Path, rows: list[dict[str, str]], header=("arch", "file", "latency_ms")):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(header), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_export_writes_the_kit(kit: Path) -> None:
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["kind"] == EXPORT_KIND and manifest["space"] == "nasbench201"
    assert [e["kind"] for e in manifest["files"]] == ["ref"] * SAMPLES + ["retest"] * RETEST
    header = (kit / "measurements.csv").read_text().splitlines()[0]
    assert header == "arch,file,latency_ms"
    for e in manifest["files"]:
        proto = onnx.load(str(kit / e["file"]))
        onnx.checker.check_model(proto, full_check=True)
        assert {p.key: p.value for p in proto.metadata_props}["latency_oracle.arch"] == e["arch"]
        assert e["input_shape"] == [1, 3, 32, 32]
    archs = [e["arch"] for e in manifest["files"]]
    assert len(set(archs)) == len(archs) and SPACE.parse_many(archs).shape == (len(archs), 6)
    readme = (kit / "README.md").read_text()
    for tool in ("onnxruntime_perf_test", "trtexec --onnx=", "benchmark_model", "onnx2tf"):
        assert tool in readme
    for field in ("batch_size", "threads", "runtime_version", "precision", "hardware"):
        assert field in readme
    contract = json.loads((kit / "contract.json").read_text())
    assert contract["unit"] == "ms/inference" and contract["batch_size"] == 1


def test_export_refuses_to_overwrite_measurements(run, kit: Path) -> None:
    with pytest.raises(SystemExit, match="exists"):
        run("device", "export", "--space", "nasbench201", "--out", str(kit))


def test_round_trip_export_measure_register(run, kit: Path) -> None:
    name = unique_name("kit")
    # no --space: the export's manifest says nasbench201; the contract comes from beside it
    code, out, err = run("--json", "device", "register", name, "--csv",
                         str(kit / "measurements.csv"))
    assert code == 0, err
    assert "contract.json" in err
    dev = json.loads(out)
    assert dev["num_samples"] == SAMPLES + RETEST
    code, out, err = run("--json", "device", "show", name, "--space", "nasbench201")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["num_samples"] == SAMPLES + RETEST
    assert shown["contract"]["runtime"] == "onnxruntime"
    assert shown["contract"]["runtime_version"] == ort.__version__
    assert shown["contract"]["threads"] == 1
    assert run("device", "delete", name, "--space", "nasbench201")[0] == 0


def _rows(kit: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((kit / "measurements.csv").open()))


def _bad_copy(kit: Path, tmp_path: Path, rows: list[dict[str, str]], manifest=True) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    if manifest:
        shutil.copy(kit / "manifest.json", folder / "manifest.json")
    write_csv(folder / "measurements.csv", rows)
    return folder / "measurements.csv"


FBNET_ARCH = get_space("fbnet").format(get_space("fbnet").sample(1, rng=0)[0])


@pytest.mark.parametrize(("row", "column", "value", "message"), [
    (0, "latency_ms", "-1.5", "must be > 0"),
    (1, "latency_ms", "0", "must be > 0"),
    (2, "latency_ms", "nan", "not a finite number"),
    (3, "latency_ms", "fast", "is not a number"),
    (4, "latency_ms", "", "blank"),
    (5, "latency_ms", "850 us", "not in milliseconds"),
    (2, "arch", "|bogus~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|",
     "unknown or invalid architecture"),
    (1, "arch", FBNET_ARCH, "it is one of 'fbnet'"),
    (3, "file", "models/ref_000.onnx", "holds the architecture"),
])
def test_bad_row_is_named_and_nothing_registered(
    run, kit: Path, tmp_path: Path, row: int, column: str, value: str, message: str
) -> None:
    rows = _rows(kit)
    rows[row][column] = value
    path = _bad_copy(kit, tmp_path, rows)
    name = unique_name("bad")
    with pytest.raises(SystemExit) as exc:
        run("device", "register", name, "--csv", str(path))
    text = str(exc.value)
    assert f"line {row + 2} " in text and message in text and "nothing registered" in text
    code, _, err = run("device", "show", name, "--space", "nasbench201")
    assert code == 1 and "NOT_FOUND" in err


def test_duplicated_row_names_both_lines(run, kit: Path, tmp_path: Path) -> None:
    rows = _rows(kit)
    rows.append(dict(rows[2], latency_ms="1.0"))
    path = _bad_copy(kit, tmp_path, rows)
    with pytest.raises(SystemExit, match=rf"line {len(rows) + 1} .*duplicated row.*line 4"):
        run("device", "register", unique_name("dup"), "--csv", str(path))


def test_wrong_space(run, kit: Path, tmp_path: Path) -> None:
    # the manifest says nasbench201: --space fbnet is refused before any row is read
    with pytest.raises(SystemExit, match=r"'nasbench201'.*not 'fbnet'"):
        run("device", "register", unique_name("ws"), "--space", "fbnet", "--csv",
            str(kit / "measurements.csv"))
    # no manifest: every row of another space is named, with the space it belongs to
    rows = [{"arch": a, "latency_ms": "2.0"}
            for a in get_space("fbnet").format_many(get_space("fbnet").sample(3, rng=1))]
    path = _bad_copy(kit, tmp_path, rows, manifest=False)
    with pytest.raises(SystemExit) as exc:
        run("device", "register", unique_name("ws"), "--space", "nasbench201", "--csv",
            str(path))
    assert all(f"line {i} " in str(exc.value) for i in (2, 3, 4))
    assert "wrong --space" in str(exc.value)


def test_skip_bad_rows_registers_the_rest_and_lists_them(
    run, kit: Path, tmp_path: Path
) -> None:
    rows = _rows(kit)
    rows[0]["latency_ms"] = "-3"
    rows[4]["latency_ms"] = ""
    path = _bad_copy(kit, tmp_path, rows)
    name = unique_name("skip")
    code, out, err = run("--json", "device", "register", name, "--csv", str(path),
                         "--skip-bad-rows")
    assert code == 0, err
    assert "skipped 2 bad row(s)" in err and "line 2 " in err and "line 6 " in err
    assert json.loads(out)["num_samples"] == SAMPLES + RETEST - 2
    assert run("device", "delete", name, "--space", "nasbench201")[0] == 0


def test_extra_columns_and_ms_suffix_are_accepted(run, kit: Path, tmp_path: Path) -> None:
    rows = _rows(kit)
    for r in rows:
        r["note"] = "ok"
        r["latency_ms"] += " ms"
    folder = tmp_path / "extra"
    folder.mkdir()
    write_csv(folder / "m.csv", rows, header=("note", "arch", "latency_ms", "file"))
    name = unique_name("extra")
    code, out, err = run("--json", "device", "register", name, "--space", "nasbench201",
                         "--csv", str(folder / "m.csv"))
    assert code == 0, err
    assert json.loads(out)["num_samples"] == SAMPLES + RETEST
    assert run("device", "delete", name, "--space", "nasbench201")[0] == 0
