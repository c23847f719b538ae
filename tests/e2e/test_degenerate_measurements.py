"""Degenerate measurement sets: a clear INVALID_ARGUMENT or a device flagged low-confidence,
never a crash and never a silently trusted head (issue #13)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from client_sdk import InvalidArgument, OracleClient
from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import degenerate
from tests.helpers import unique_name

SPACE = get_space("nasbench201")
_ROWS = np.flatnonzero(~degenerate("nasbench201", SPACE.table.genes))[::997][:12]
GENES = SPACE.table.genes[_ROWS]
TRUE = SPACE.table.device_column("1080ti_1")  # a basis device: a well-behaved target
ROWS_GENES = GENES
ROWS_LAT = TRUE[_ROWS]


def _register(client: OracleClient, genes: np.ndarray, lat) -> object:
    return client.register_device(unique_name("degen"), "nasbench201", (genes, np.asarray(lat)))


@pytest.mark.parametrize(
    ("genes", "lat", "fragment"),
    [
        (GENES, np.full(12, 5.0), "all 12 latencies are equal"),
        (np.repeat(GENES[:1], 6, axis=0), np.linspace(4, 6, 6), "only 1 distinct architecture"),
        (GENES[:4], [1.0, float("nan"), 2.0, 3.0], "latency_ms"),
        (GENES[:4], [1.0, 2.0, -3.0, 3.0], "latency_ms[2]"),
        (GENES[:4], [1.0, 2.0, 0.0, 3.0], "latency_ms[2]"),
    ],
)
def test_rejected_with_clear_error(client: OracleClient, genes, lat, fragment) -> None:
    with pytest.raises(InvalidArgument) as info:
        _register(client, genes, lat)
    assert fragment in str(info.value)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.health() == "SERVING"


def test_two_distinct_values_flagged_low(client: OracleClient) -> None:
    lat = np.where(np.arange(12) % 2 == 0, 10.0, 11.0)
    dev = _register(client, GENES, lat)
    assert dev.quality == "low" and dev.advised_samples >= 20
    assert any("2 distinct values" in w for w in dev.warnings)


def test_single_huge_outlier_flagged(client: OracleClient) -> None:
    lat = ROWS_LAT.copy()
    lat[7] *= 50.0
    dev = _register(client, ROWS_GENES, lat)
    assert dev.quality == "low"
    assert any("measurement(s) 7" in w or "7," in w for w in dev.warnings), dev.warnings
    clean = _register(client, ROWS_GENES, ROWS_LAT)
    assert not any(w.startswith("measurement") for w in clean.warnings)


def test_duplicates_are_merged(client: OracleClient) -> None:
    genes = np.concatenate([ROWS_GENES, ROWS_GENES[:3]])
    lat = np.concatenate([ROWS_LAT, ROWS_LAT[:3] * 1.02])
    dev = _register(client, genes, lat)
    assert dev.num_samples == 15  # all stored; the head fits one sample per architecture
    res = client.rank("nasbench201", SPACE.table.genes[:500], dev.name)
    assert np.isfinite(res.latency_ms[dev.name]).all()


def test_few_samples_flagged_low(client: OracleClient) -> None:
    dev = _register(client, ROWS_GENES[:3], ROWS_LAT[:3])
    assert dev.quality == "low" and dev.advised_samples == 20
