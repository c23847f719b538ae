"""The plain install is a working client: build the wheel, install it with no extras in a
fresh virtual environment, and rank through a running server from there.

It also checks what the plain install must *not* carry (the server's and the search's
dependencies), that the extras' modules fail with a message naming the extra, and that the
errors arrive as the same classes with their google.rpc.Status details.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from client_sdk.spaces import get_space
from tests.helpers import REPO

CLIENT_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    target, expected_path = sys.argv[1], sys.argv[2]
    expected = json.load(open(expected_path))
    heavy = ["lightgbm", "sqlalchemy", "scipy", "torch", "pymoo", "matplotlib", "prometheus_client"]
    present = [m for m in heavy if importlib.util.find_spec(m) is not None]
    assert not present, f"plain install pulled {present}"

    import client_sdk
    from client_sdk import InvalidArchitecture, OracleClient
    from client_sdk._extras import MissingExtra
    from client_sdk.spaces import get_space

    for module, extra in (("client_sdk.search", "search"), ("client_sdk.measure", "measure"),
                          ("oracle_server", "server")):
        try:
            importlib.import_module(module)
        except MissingExtra as exc:
            assert f"[{extra}]" in str(exc), str(exc)
        else:
            raise AssertionError(f"{module} imported without its extra")

    space = get_space("nasbench201")
    archs = expected["archs"]
    with OracleClient(target, timeout_s=30) as oracle:
        assert "nasbench201" in [s.name for s in oracle.list_spaces()]
        res = oracle.rank("nasbench201", archs, ["pixel3"])
        got = [float(x) for x in res.latency_ms["pixel3"]]
        assert got == expected["latency_ms"], (got[:3], expected["latency_ms"][:3])
        try:
            oracle.rank("nasbench201", [archs[0], "|nor_conv_3x3~0|+|bogus~0|"], ["pixel3"])
        except InvalidArchitecture as exc:
            assert exc.index == 1, exc.index
        else:
            raise AssertionError("invalid architecture accepted")
        genes = space.sample(3, rng=1).astype("int64")
        genes[2, 4] = 99
        try:
            oracle.rank("nasbench201", genes, ["pixel3"])
        except InvalidArchitecture as exc:
            assert (exc.index, exc.gene) == (2, 4), (exc.index, exc.gene)
        # over the wire: the server's google.rpc.Status becomes the same exception class
        from client_sdk import DeviceNotFound
        try:
            oracle.rank("nasbench201", archs[:2], ["no-such-device"])
        except DeviceNotFound as exc:
            assert exc.reason == "DEVICE_NOT_FOUND" and "no-such-device" in str(exc)
        else:
            raise AssertionError("unknown device accepted")
    import grpc, google.protobuf
    print("CLIENT-OK", client_sdk.__name__, "grpcio", grpc.__version__,
          "protobuf", google.protobuf.__version__)
    """
)


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    # build from a copy of the sources: setuptools' build/ directory in the checkout could
    # carry modules deleted since, and the wheel must hold only what the tree holds
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".oracle", "__pycache__", ".pytest_cache",
        "tests", "benchmarks", "docs", "deploy", "examples"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(dist), str(src)],
        check=True, cwd=root, timeout=600,
    )
    (wheel,) = dist.glob("latency_oracle-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return env_dir


def test_wheel_without_extras_ranks_through_a_server(plain_venv, server, client, tmp_path):
    space = get_space("nasbench201")
    archs = space.format_many(space.sample(200, rng=0))
    res = client.rank("nasbench201", archs, ["pixel3"])
    expected = {"archs": archs, "latency_ms": [float(x) for x in res.latency_ms["pixel3"]]}
    path = tmp_path / "expected.json"
    path.write_text(json.dumps(expected))
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    out = subprocess.run(
        [str(plain_venv / "bin" / "python"), str(script), f"127.0.0.1:{server.port}", str(path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CLIENT-OK" in out.stdout
    # the plain install resolves the newest grpcio/protobuf its ranges allow, not the
    # generator's versions: the committed generated code must work with those too
    print(out.stdout.strip().splitlines()[-1])


def test_plain_install_cli_names_the_missing_extra(plain_venv, server):
    oracle = plain_venv / "bin" / "oracle"
    ok = subprocess.run(
        [str(oracle), "--target", f"127.0.0.1:{server.port}", "devices", "--space",
         "nasbench201"], capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0 and "pixel3" in ok.stdout, ok.stdout + ok.stderr
    search = subprocess.run(
        [str(oracle), "--target", f"127.0.0.1:{server.port}", "search", "--space",
         "nasbench201", "--device", "pixel3"], capture_output=True, text=True, timeout=60,
    )
    assert search.returncode == 2, search.stdout + search.stderr
    assert "[search]" in search.stderr and "Traceback" not in search.stderr
