"""The committed generated code is exactly what `make proto` produces from protos/."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "client_sdk" / "proto" / "latency_oracle" / "v1"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-Iclient_sdk/proto={REPO / 'protos'}",
        f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}",
        str(REPO / "protos" / "latency_oracle" / "v1" / "oracle.proto"),
    ]
    subprocess.run(cmd, check=True, cwd=REPO)
    fresh = tmp_path / "client_sdk" / "proto" / "latency_oracle" / "v1"
    for name in ("oracle_pb2.py", "oracle_pb2_grpc.py", "oracle_pb2.pyi"):
        assert filecmp.cmp(fresh / name, GENERATED / name, shallow=False), (
            f"{name} is stale: run `make proto`"
        )
