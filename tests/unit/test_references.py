"""Reference suggestion: the adaptive rule (``suggest_next``) and ``Oracle.suggest(device=)``."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.errors import InvalidArgument, NotFound
from client_sdk.spaces import get_space
from oracle_server.oracle import Oracle
from oracle_server.predictor import build_model
from oracle_server.predictor.references import _row_keys, suggest_next
from oracle_server.registry import Registry
from oracle_server.store import DeviceStore
from oracle_server.writes import DeviceWrite
from tests.helpers import TEST_CACHE, nb201_non_train_devices


def _pool(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    genes = np.unique(rng.integers(0, 5, (n * 2, 6)).astype(np.int16), axis=0)[:n]
    basis = np.exp(rng.normal(size=(len(genes), 3)))
    return genes, basis


def test_excludes_measured_and_is_distinct() -> None:
    genes, basis = _pool()
    measured = genes[::7]
    out = suggest_next(genes, basis, np.ones(len(genes)), measured, 20, seed=1)
    assert out.shape == (20, 6)
    assert not np.isin(_row_keys(out), _row_keys(measured)).any()
    assert len(np.unique(_row_keys(out))) == 20


def test_follows_uncertainty() -> None:
    genes, basis = _pool()
    sigma = np.zeros(len(genes))
    hot = np.arange(0, len(genes), 10)  # only these are uncertain
    sigma[hot] = 1.0
    out = suggest_next(genes, basis, sigma, genes[:0], 10)
    assert np.isin(_row_keys(out), _row_keys(genes[hot])).all()


def test_spreads_away_from_measured() -> None:
    """Constant uncertainty: the first pick is the farthest from the measured cluster."""
    genes, basis = _pool()
    z = np.log(basis)
    centre = np.argsort(((z - z.mean(0)) ** 2).sum(1))[:20]  # measured: the middle
    out = suggest_next(genes, basis, np.ones(len(genes)), genes[centre], 1)
    zs = (z - z.mean(0)) / z.std(0)
    d = np.min(((zs[:, None, :] - zs[None, centre, :]) ** 2).sum(-1), axis=1)
    d[centre] = -1
    np.testing.assert_array_equal(out[0], genes[np.argmax(d)])


def test_pool_running_out() -> None:
    genes, basis = _pool(30)
    out = suggest_next(genes, basis, np.ones(len(genes)), genes[:27], 10)
    assert out.shape == (3, 6)
    assert suggest_next(genes, basis, np.ones(len(genes)), genes, 5).shape == (0, 6)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    model = build_model("nasbench201", nb201_non_train_devices(), cache_dir=TEST_CACHE)
    db = tmp_path_factory.mktemp("reg") / "r.db"
    return Oracle(DeviceStore({"nasbench201": model}, Registry(f"sqlite:///{db}")))


def test_oracle_suggest_for_a_device(oracle: Oracle) -> None:
    sp = get_space("nasbench201")
    first = oracle.suggest("nasbench201", 10)
    lat = sp.flops(first) / 1e6 + 1.0  # a synthetic device
    oracle.register(DeviceWrite("nasbench201", "synthetic", first, lat))
    nxt = oracle.suggest("nasbench201", 8, device="synthetic")
    assert nxt.shape == (8, 6)
    assert not np.isin(_row_keys(nxt), _row_keys(first)).any()
    assert not np.array_equal(nxt, oracle.suggest("nasbench201", 8))
    oracle.add_measurements(DeviceWrite("nasbench201", "synthetic", nxt, sp.flops(nxt) / 1e6 + 1.0))
    again = oracle.suggest("nasbench201", 8, device="nasbench201/synthetic")
    assert not np.isin(_row_keys(again), _row_keys(np.concatenate([first, nxt]))).any()
    with pytest.raises(NotFound):
        oracle.suggest("nasbench201", 5, device="ghost")
    with pytest.raises(InvalidArgument) as info:
        oracle.suggest("nasbench201", 0, device="synthetic")
    assert info.value.field == "n"
    with pytest.raises(InvalidArgument) as info:
        oracle.suggest("nasbench201", 5, device="fbnet/synthetic")
    assert info.value.field == "device"
