"""A space from a definition, served end to end: listed, references suggested, a device
registered from measurements, ranked; bad input named. No table: the basis is transferred
from the bundled spaces (``predictor.cross_space``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.stats import spearmanr

from client_sdk import InvalidArchitecture, OracleClient
from client_sdk.errors import DeviceNotFound
from client_sdk.spaces import get_space
from oracle_server.predictor import build_model
from tests.e2e.conftest import connect, make_settings, running
from tests.helpers import TEST_CACHE

SPACE = "proxyless"


def synthetic_device(genes: np.ndarray) -> np.ndarray:
    """A roofline-like device: compute, memory traffic and per-kernel launch costs (ms)."""
    d = get_space(SPACE).descriptors(genes)[:, :6]
    return 2e-9 * d[:, 0] + 1.5e-8 * d[:, 1] + 4e-8 * d[:, 3] + 0.02 * d[:, 4]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OracleClient]:
    model = build_model(SPACE, cache_dir=TEST_CACHE)
    settings = make_settings(tmp_path_factory.mktemp("defined"), spaces=(SPACE,))
    with running(settings, {SPACE: model}) as app, connect(app) as client:
        yield client


def test_defined_space_is_listed_without_table_devices(served: OracleClient) -> None:
    (info,) = [s for s in served.list_spaces() if s.name == SPACE]
    sp = get_space(SPACE)
    assert info.num_genes == sp.num_genes == 21
    assert info.num_architectures == 0 and list(info.table_devices) == []
    assert sp.parse(info.example_arch).shape == (21,)
    assert served.list_devices(SPACE) == []


def test_register_from_measurements_and_rank(served: OracleClient) -> None:
    sp = get_space(SPACE)
    genes = served.suggest_references(SPACE, 10, seed=3)
    assert genes.shape == (10, 21)
    device = served.register_device("synthetic_npu", SPACE, (genes, synthetic_device(genes)))
    assert device.num_samples == 10
    pool = sp.sample(2000, rng=9)
    res = served.rank(SPACE, pool, ["synthetic_npu"])
    pred = np.asarray(res.latency_ms["synthetic_npu"], dtype=np.float64)
    rho = spearmanr(pred, synthetic_device(pool))[0]
    flops = spearmanr(sp.flops(pool), synthetic_device(pool))[0]
    assert rho > 0.9 and rho > flops, (rho, flops)
    strings = sp.format_many(pool[:50])
    by_string = served.rank(SPACE, strings, ["synthetic_npu"])
    np.testing.assert_allclose(by_string.latency_ms["synthetic_npu"], pred[:50], rtol=1e-6)


def test_bad_input_is_named(served: OracleClient) -> None:
    sp = get_space(SPACE)
    good = sp.format(sp.sample(1, rng=0)[0])
    bad = good.replace(good.split("-")[0], "k9_e9", 1)
    with pytest.raises(InvalidArchitecture) as info:
        served.rank(SPACE, [good, bad], ["synthetic_npu"])
    assert info.value.index == 1
    with pytest.raises(DeviceNotFound):
        served.rank(SPACE, [good], ["no_such_device"])
