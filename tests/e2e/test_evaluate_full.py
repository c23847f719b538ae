"""`oracle-server evaluate` on the full HELP protocol (slow: trains the proxies).

Guards the published-protocol reproduction end to end: the JSON has the documented keys,
every test device is scored, and the adapted predictor beats the analytic FLOPs baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, TEST_CACHE


@pytest.mark.slow
@pytest.mark.parametrize("space", ["nasbench201", "fbnet"])
def test_help_protocol_cli(space: str, tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    proc = subprocess.run(
        [sys.executable, "-m", "oracle_server", "evaluate", "--space", space, "--protocol",
         "help", "--json", str(out), "--cache-dir", str(TEST_CACHE)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HELP" in proc.stdout and "FLOPs" in proc.stdout
    result = json.loads(out.read_text())
    for key in ("space", "protocol", "samples", "devices", "mean", "published",
                "flops_baseline"):
        assert key in result
    assert result["space"] == space and result["protocol"] == "help"
    assert result["samples"] == 10
    assert set(result["devices"]) == set(result["published"]) - {"mean", "flops_mean"}
    # the means are over the scored test devices, each the Spearman of its details
    for dev, rho in result["devices"].items():
        assert rho == result["details"][dev]["spearman"], dev
    assert result["mean"] == pytest.approx(np.mean(list(result["devices"].values())))
    flops = result["flops_baseline"]
    assert set(flops) == {*result["devices"], "mean"}
    assert flops["mean"] == pytest.approx(np.mean([flops[d] for d in result["devices"]]))
    assert result["mean"] > result["flops_baseline"]["mean"]
