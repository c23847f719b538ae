"""The priority gate for small calls (``oracle_server.priority``) and its settings.

* a small call in flight makes a large call wait before its next chunk, at most
  ``max_wait_s`` per chunk; the counter returns to zero on errors and cancellation;
* a large Rank computed in chunks (yielding between them) is bit-identical to the unchunked
  computation, in every bundled space and a user-defined one, on both Rank paths;
* ``--large-call-work`` / ``--gil-switch-interval-ms``: flags, env, validation.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from client_sdk.errors import DeadlineExceeded
from client_sdk.spaces import register_space
from oracle_server import metrics
from oracle_server.oracle import Oracle
from oracle_server.predictor import LatencyModel, build_model
from oracle_server.priority import GATE, LARGE_CALL_WORK, PriorityGate
from oracle_server.settings import Settings, load_settings
from oracle_server.store import REGISTERED, Device, DeviceStore
from tests.helpers import REPO, TEST_CACHE, nb201_non_train_devices, serve_flags
from tests.unit.test_space_language import TOY

BUNDLED = ("nasbench201", "fbnet", "ofa_mbv3", "mobilenetv2", "proxyless")
USER_DEFINED = {**copy.deepcopy(TOY), "name": "priority_toy"}


def _yields() -> float:
    return metrics.REGISTRY.get_sample_value("oracle_large_call_yields_total") or 0.0


def _hold_small(gate: PriorityGate, release: threading.Event) -> threading.Thread:
    """A thread that keeps one small call in flight until ``release`` is set."""
    entered = threading.Event()

    def hold() -> None:
        with gate.small_call():
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert entered.wait(5)
    return thread


# ------------------------------------------------------------------------------ the gate
def test_large_is_above_the_threshold_and_zero_turns_it_off() -> None:
    gate = PriorityGate(1000)
    assert not gate.is_large(1000) and gate.is_large(1001)
    assert not PriorityGate(0).is_large(10**9)
    assert PriorityGate().large_call_work == LARGE_CALL_WORK
    for bad in (
        {"large_call_work": -1},
        {"large_call_work": 1, "chunk": 0},
        {"large_call_work": 1, "max_wait_s": -1.0},
    ):
        with pytest.raises(ValueError):
            PriorityGate(**bad)


def test_pace_without_small_calls_returns_at_once_uncounted() -> None:
    gate = PriorityGate(1, max_wait_s=5.0)
    before = _yields()
    t0 = time.perf_counter()
    assert gate.pace() == 0.0
    assert time.perf_counter() - t0 < 0.01 and _yields() == before


def test_pace_waits_for_the_small_call_in_flight() -> None:
    gate = PriorityGate(1, max_wait_s=5.0)
    release = threading.Event()
    holder = _hold_small(gate, release)
    assert gate.small_in_flight == 1
    threading.Timer(0.1, release.set).start()
    before = _yields()
    waited = gate.pace()
    holder.join(5)
    assert 0.05 < waited < 4.0  # woken when the small call ended, not at max_wait_s
    assert gate.small_in_flight == 0 and _yields() == before + 1


def test_pace_is_bounded_so_large_calls_cannot_starve() -> None:
    gate = PriorityGate(1, max_wait_s=0.05)
    release = threading.Event()
    holder = _hold_small(gate, release)
    try:
        t0 = time.perf_counter()
        for _ in range(3):
            assert 0.04 < gate.pace() < 1.0
        assert time.perf_counter() - t0 < 2.0
    finally:
        release.set()
        holder.join(5)


def test_counter_returns_to_zero_on_errors() -> None:
    gate = PriorityGate(1)
    with pytest.raises(RuntimeError), gate.small_call():
        assert gate.small_in_flight == 1
        raise RuntimeError("boom")
    assert gate.small_in_flight == 0


# ------------------------------------------------------------------------------ in Rank
@pytest.fixture(scope="module")
def nb201() -> LatencyModel:
    return build_model("nasbench201", nb201_non_train_devices(), cache_dir=TEST_CACHE)


class CountingGate(PriorityGate):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.paces = 0

    def pace(self) -> float:
        self.paces += 1
        return super().pace()


@pytest.mark.parametrize("table_fast_path", [True, False])
def test_large_rank_paces_before_each_chunk_and_device(
    nb201: LatencyModel, table_fast_path: bool
) -> None:
    store = DeviceStore.in_memory({"nasbench201": nb201})
    gate = CountingGate(1000, chunk=700)
    oracle = Oracle(store, gate=gate, table_fast_path=table_fast_path)
    genes = nb201.space.sample(5000, rng=1)
    oracle.rank("nasbench201", genes, ["pixel3", "silver_4114"])
    assert gate.paces == -(-5000 // 700) + 2  # 8 chunks, then one per device
    gate.paces = 0
    oracle.rank("nasbench201", genes[:400], ["pixel3"])  # small: counted, never paces
    assert gate.paces == 0 and gate.small_in_flight == 0


@pytest.mark.parametrize("table_fast_path", [True, False])
def test_small_call_in_flight_holds_a_large_rank_between_chunks(
    nb201: LatencyModel, table_fast_path: bool
) -> None:
    store = DeviceStore.in_memory({"nasbench201": nb201})
    gate = PriorityGate(1000, chunk=500, max_wait_s=30.0)
    oracle = Oracle(store, gate=gate, table_fast_path=table_fast_path)
    genes = nb201.space.sample(3000, rng=2)
    expected = Oracle(store, gate=PriorityGate(0), table_fast_path=table_fast_path).rank(
        "nasbench201", genes, ["pixel3"]
    )
    release = threading.Event()
    holder = _hold_small(gate, release)
    out: list = []
    large = threading.Thread(
        target=lambda: out.append(oracle.rank("nasbench201", genes, ["pixel3"])), daemon=True
    )
    before = _yields()
    large.start()
    large.join(0.3)
    assert large.is_alive() and not out  # waiting for the small call before a chunk
    release.set()
    large.join(30)
    holder.join(5)
    assert out and _yields() >= before + 1
    np.testing.assert_array_equal(out[0].rankings[0].order, expected.rankings[0].order)
    np.testing.assert_array_equal(out[0].rankings[0].latency_ms, expected.rankings[0].latency_ms)


@pytest.mark.parametrize("table_fast_path", [True, False])
def test_counter_returns_to_zero_on_cancellation(
    nb201: LatencyModel, table_fast_path: bool
) -> None:
    store = DeviceStore.in_memory({"nasbench201": nb201})
    gate = PriorityGate(10**9)  # every call small
    oracle = Oracle(store, gate=gate, table_fast_path=table_fast_path, predict_chunk=100)
    genes = nb201.space.sample(500, rng=3)
    with pytest.raises(DeadlineExceeded):
        oracle.rank("nasbench201", genes, ["pixel3"], is_cancelled=lambda: True)
    assert gate.small_in_flight == 0
    large = Oracle(store, gate=PriorityGate(1, chunk=100), table_fast_path=table_fast_path)
    with pytest.raises(DeadlineExceeded):  # a large call stops between its chunks too
        large.rank("nasbench201", genes, ["pixel3"], is_cancelled=lambda: True)


def test_oracle_defaults_to_the_process_gate(nb201: LatencyModel) -> None:
    assert Oracle(DeviceStore.in_memory({"nasbench201": nb201})).gate is GATE


# ------------------------------------------------------------------ chunked = unchunked
def _served(space: str) -> tuple[DeviceStore, list[str]]:
    """A store of the space's model with up to two table devices plus one registered
    device (a head fit on synthetic latencies), and those devices' names."""
    if space == USER_DEFINED["name"]:
        register_space(USER_DEFINED)
    holdout = nb201_non_train_devices() if space == "nasbench201" else ()
    model = build_model(space, holdout, cache_dir=TEST_CACHE)
    genes = model.space.sample(40, rng=7)
    d = model.space.descriptors(genes)[:, :6]
    lat = 0.3 + 2e-9 * d[:, 0] + 1.5e-8 * d[:, 1] + 4e-8 * d[:, 3] + 0.02 * d[:, 4]
    registered = Device(space, "synthetic", REGISTERED, model.fit_head(genes, lat))
    store = DeviceStore.in_memory({space: model}, [registered])
    table = [dev.name for dev in store.snapshot() if dev.source != REGISTERED][:2]
    return store, [*table, registered.name]


@pytest.mark.parametrize("space", [*BUNDLED, USER_DEFINED["name"]])
def test_chunked_rank_is_bit_identical(space: str) -> None:
    store, names = _served(space)
    genes = store.model(space).space.sample(3000, rng=11)
    budget = float(
        np.median(Oracle(store).rank(space, genes[:200], names[:1]).rankings[0].latency_ms)
    )
    kwargs = dict(top_k=500, max_latency_ms=budget, return_uncertainty=True, interval_level=0.9)
    for fast in (True, False):
        whole = Oracle(store, gate=PriorityGate(0), predict_chunk=10**9, table_fast_path=fast)
        gate = CountingGate(1, chunk=257)  # every call large, odd chunks
        chunked = Oracle(store, gate=gate, table_fast_path=fast)
        a = whole.rank(space, genes, names, **kwargs)
        b = chunked.rank(space, genes, names, **kwargs)
        assert gate.paces == -(-3000 // 257) + len(names)
        for x, y in zip(a.rankings, b.rankings, strict=True):
            for field in ("latency_ms", "order", "lower_ms", "upper_ms", "prob_within_budget"):
                np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=field)
                assert getattr(x, field).dtype == getattr(y, field).dtype


# ----------------------------------------------------------------------------- settings
def test_settings_defaults_flags_and_env() -> None:
    s = load_settings(env={})
    assert s.large_call_work == LARGE_CALL_WORK and s.gil_switch_interval_ms == 5.0
    env = {"ORACLE_LARGE_CALL_WORK": "5000", "ORACLE_GIL_SWITCH_INTERVAL_MS": "1.5"}
    s = load_settings(env=env)
    assert (s.large_call_work, s.gil_switch_interval_ms) == (5000, 1.5)
    flags = serve_flags("--large-call-work", "0", "--gil-switch-interval-ms", "0.25")
    s = load_settings(flags, env=env)
    assert (s.large_call_work, s.gil_switch_interval_ms) == (0, 0.25)


@pytest.mark.parametrize(
    "changes",
    [
        {"gil_switch_interval_ms": 0.0},
        {"gil_switch_interval_ms": -1.0},
        {"gil_switch_interval_ms": float("nan")},
        {"gil_switch_interval_ms": float("inf")},
        {"large_call_work": -1},
    ],
)
def test_invalid_priority_settings_are_rejected(changes: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(changes))):
        Settings(**changes)


def test_zero_switch_interval_is_a_start_up_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "oracle_server", "serve", "--gil-switch-interval-ms", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "gil_switch_interval_ms must be a positive number of milliseconds" in proc.stderr
