"""``oracle-server evaluate`` on small, fast configurations writes the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oracle_server.__main__ import main


def test_evaluate_help_writes_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    rc = main(["evaluate", "--space", "ofa_mbv3", "--protocol", "help", "--fast",
               "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    for key in ("space", "protocol", "samples", "devices", "mean", "published",
                "flops_baseline", "validation", "roles"):
        assert key in r
    assert r["space"] == "ofa_mbv3" and r["protocol"] == "help" and r["samples"] == 10
    assert set(r["devices"]) == {"titan_rtx_64"}
    assert -1.0 <= r["mean"] <= 1.0
    assert "titan_rtx_64" in r["flops_baseline"]
    assert r["details"]["titan_rtx_64"]["seeds"] == 1


def test_evaluate_leave_family_out_random(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lfo.json"
    rc = main(["evaluate", "--space", "ofa_mbv3", "--protocol", "leave-family-out", "--fast",
               "--seeds", "2", "--samples", "5", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["reference"] == "random" and r["samples"] == 5
    assert set(r["families"]) == {"2080ti", "titan_rtx", "titan_xp", "v100"}
    assert len(r["devices"]) == 12
    assert "overall mean" in capsys.readouterr().out
