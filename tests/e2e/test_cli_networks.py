"""``oracle device register --models`` and ``oracle rank --models`` against a real server:
a models file of tiny torch networks, measured here or given as a CSV, then ranked; every
bad input is one line and exit code 2 (an unknown device: the usual NOT_FOUND)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import unique_name

pytest.importorskip("torch")

MODELS_PY = """
from torch import nn


def net(width, depth):
    layers = [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


MODELS = {f"w{w}_d{d}": net(w, d) for w in (4, 8, 16, 32) for d in (1, 3)}
"""
NAMES = [f"w{w}_d{d}" for w in (4, 8, 16, 32) for d in (1, 3)]
SHAPE = "1,3,32,32"
#: ``device register --measure N`` timing kept short (one thread, 3 rounds, 9 repeats).
QUICK_TIMING = ("--threads", "1", "--rounds", "3", "--repeats", "9")


@pytest.fixture()
def models_py(tmp_path: Path) -> str:
    path = tmp_path / "models.py"
    path.write_text(MODELS_PY)
    return str(path)


def fails(run, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The CLI's usage error: exit code 2 and one line on stderr (returned)."""
    with pytest.raises(SystemExit) as exc:
        run(*args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, (exc.value.code, err)
    return err


def test_register_measured_and_csv_devices_then_rank(run, models_py: str, tmp_path: Path) -> None:
    here = unique_name("here")
    code, out, err = run(
        "-q",
        "device",
        "register",
        here,
        "--models",
        models_py,
        "--input-shape",
        SHAPE,
        "--measure",
        "5",
        *QUICK_TIMING,
    )
    assert code == 0, err
    assert "registered" in out and "from 5 networks" in out and "expected_spearman" in out
    assert "quality" in out and "head_kind" in out  # the device table; a LOW verdict: stderr
    assert ("LOW-CONFIDENCE" in err) == (" low " in out.splitlines()[-1])

    csv_path = tmp_path / "measured.csv"  # measured elsewhere: latency grows with the width
    csv_path.write_text(
        "name,latency_ms\n"
        + "".join(f"{n},{0.1 * int(n[1:].split('_')[0]) * (1 + int(n[-1]))}\n" for n in NAMES[:6])
    )
    there = unique_name("there")
    code, out, err = run(
        "--json",
        "device",
        "register",
        there,
        "--models",
        models_py,
        "--input-shape",
        SHAPE,
        "--csv",
        str(csv_path),
    )
    assert code == 0, err
    reg = json.loads(out)
    assert reg["device"]["num_samples"] == 6 and set(reg["measured"]) == set(NAMES[:6])

    code, out, err = run(
        "rank", "--models", models_py, "--input-shape", SHAPE, "--devices", here, there, "--json"
    )
    assert code == 0, err
    ranked = json.loads(out)
    assert ranked["space"] == reg["space"]  # the same networks find the same space
    for dev in (here, there):
        rows = ranked["ranking"][dev]
        assert sorted(r["name"] for r in rows) == sorted(NAMES)
        lat = [r["latency_ms"] for r in rows]
        assert lat == sorted(lat)
        assert all(r["lower_ms"] <= r["latency_ms"] <= r["upper_ms"] for r in rows)
    order = [r["name"] for r in ranked["ranking"][there]]
    assert order.index("w4_d1") < order.index("w32_d3")

    code, out, err = run("rank", "--models", models_py, "--input-shape", SHAPE, "--devices", here)
    assert code == 0, err
    lines = out.splitlines()
    assert "fastest first" in lines[0] and f"{here} 80%" in lines[1]
    assert {line.split()[1] for line in lines[3:]} == set(NAMES)


def test_bad_models_files_are_named(run, capsys, models_py: str, tmp_path: Path) -> None:
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    rank = ("rank", "--input-shape", SHAPE, "--devices", "x", "--models")
    err = fails(run, capsys, *rank, str(tmp_path / "missing.py"))
    assert "missing.py" in err and "not found" in err
    err = fails(run, capsys, *rank, write("empty.py", "X = 1\n"))
    assert "empty.py" in err and "neither MODELS" in err and "models()" in err
    err = fails(run, capsys, *rank, write("value.py", "MODELS = {'bad': 42}\n"))
    assert "MODELS['bad'] is a int" in err and "nn.Module" in err
    err = fails(run, capsys, *rank, write("boom.py", "raise RuntimeError('no gpu here')\n"))
    assert "boom.py" in err and "RuntimeError: no gpu here" in err
    unsupported = write(
        "rnn.py",
        """
        from torch import nn
        def models():
            return {"ok": nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
                    "rnn": nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU())}
        """,
    )
    err = fails(run, capsys, *rank, unsupported)
    assert "MODELS['rnn']" in err and "PReLU" in err
    err = fails(run, capsys, "rank", "--devices", "x", "--models", models_py)
    assert "no input shape" in err and "--input-shape" in err
    err = fails(run, capsys, "rank", "--models", models_py, "--input-shape", "1,3,a")
    assert "give the devices" in err
    err = fails(
        run, capsys, "rank", "--space", "nasbench201", "--devices", "x", "--models", models_py
    )
    assert "--space-name" in err
    err = fails(
        run, capsys, "rank", "--devices", "x", "--models", models_py, "--input-shape", "1,3,a"
    )
    assert "--input-shape '1,3,a'" in err
    register = ("device", "register", "d", "--models", models_py, "--input-shape", SHAPE)
    err = fails(run, capsys, *register)
    assert "--measure N" in err and "--csv" in err
    err = fails(run, capsys, *register, "--names", "w4_d1,nope")
    assert "nope" in err
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("name,latency_ms\nw4_d1,1.0\nghost,2.0\nw8_d1,-1\n")
    err = fails(run, capsys, *register, "--csv", str(bad_csv))
    assert "2 bad row(s)" in err and "'ghost' is not a network" in err and "line 4" in err

    code, _, err = run(
        "rank", "--models", models_py, "--input-shape", SHAPE, "--devices", "ghost_device"
    )
    assert code == 1 and "NOT_FOUND" in err and "ghost_device" in err


def test_onnx_files_rank_with_modules_and_are_not_timed_here(run, tmp_path: Path) -> None:
    pytest.importorskip("client_sdk.measure.onnx_layers")
    pytest.importorskip("onnx")
    import warnings

    import torch

    ns: dict = {}
    exec(MODELS_PY, ns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ns["net"](24, 2).eval(),
            (torch.zeros(1, 3, 32, 32),),
            str(tmp_path / "exported.onnx"),
            dynamo=False,
        )
    path = tmp_path / "mixed.py"  # the .onnx path is relative to the models file
    path.write_text(
        MODELS_PY + "MODELS = {k: MODELS[k] for k in ('w4_d1', 'w8_d3', 'w32_d3')}\n"
        "MODELS['onnx_w24'] = 'exported.onnx'\nINPUT_SHAPE = (1, 3, 32, 32)\n"
    )
    name = unique_name("mixed")
    code, out, err = run(
        "--json",
        "device",
        "register",
        name,
        "--models",
        str(path),
        "--measure",
        "8",
        *QUICK_TIMING,
    )
    assert code == 0, err
    assert sorted(json.loads(out)["measured"]) == ["w32_d3", "w4_d1", "w8_d3"]
    code, out, err = run("--json", "rank", "--models", str(path), "--devices", name)
    assert code == 0, err
    assert {r["name"] for r in json.loads(out)["ranking"][name]} == {
        "w4_d1",
        "w8_d3",
        "w32_d3",
        "onnx_w24",
    }
