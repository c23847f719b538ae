"""The priority gate end to end: a server started with ``--large-call-work`` and
``--gil-switch-interval-ms`` applies them, and a large Rank running while small Ranks stream
in from other clients yields to them between its chunks, with every answer exactly what the
unchunked computation gives."""

from __future__ import annotations

import sys
import threading
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from client_sdk import OracleClient
from oracle_server import metrics
from oracle_server.app import App
from oracle_server.oracle import Oracle, RankResult
from oracle_server.predictor import LatencyModel
from oracle_server.priority import GATE, PriorityGate
from tests.e2e.conftest import make_settings

SPACE = "nasbench201"
DEVICES = ["pixel3", "silver_4114"]


@pytest.fixture(scope="module")
def gated(nb201_model: LatencyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    interval, work = sys.getswitchinterval(), GATE.large_call_work
    settings = make_settings(
        tmp_path_factory.mktemp("priority"), large_call_work=5000, gil_switch_interval_ms=2.0
    )
    app = App(settings, models={SPACE: nb201_model}).start(block_until_ready=True, timeout_s=60)
    try:
        yield app
    finally:
        app.stop(1.0)
        sys.setswitchinterval(interval)  # process-wide: leave the session as it was
        GATE.configure(work)


def _yields() -> float:
    return metrics.REGISTRY.get_sample_value("oracle_large_call_yields_total") or 0.0


def _same(got, want: RankResult, names: list[str]) -> None:
    for name, ranking in zip(names, want.rankings, strict=True):
        np.testing.assert_array_equal(got.latency_ms[name], ranking.latency_ms)
        np.testing.assert_array_equal(got.order[name], ranking.order)
        if ranking.lower_ms is not None:
            np.testing.assert_array_equal(got.lower_ms[name], ranking.lower_ms)
            np.testing.assert_array_equal(got.upper_ms[name], ranking.upper_ms)
        if ranking.prob_within_budget is not None:
            np.testing.assert_array_equal(got.prob_within_budget[name], ranking.prob_within_budget)


def test_settings_are_applied_at_start(gated: App) -> None:
    assert sys.getswitchinterval() == pytest.approx(0.002)
    assert GATE.large_call_work == 5000
    assert gated.oracle is not None and gated.oracle.gate is GATE
    url = f"http://127.0.0.1:{gated.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    assert "oracle_large_call_yields_total" in text
    assert "oracle_large_call_yield_seconds_bucket" in text


def test_large_rank_and_concurrent_small_ranks_are_correct(gated: App) -> None:
    assert gated.oracle is not None
    space = gated.oracle.space(SPACE)
    reference = Oracle(gated.oracle.store, gate=PriorityGate(0), predict_chunk=10**9)
    big = space.sample(100_000, rng=21)
    big_args = dict(top_k=20_000, max_latency_ms=20.0, return_uncertainty=True)
    want_big = reference.rank(SPACE, big, DEVICES, **big_args)
    smalls = [space.sample(100, rng=i) for i in range(8)]
    want_small = [reference.rank(SPACE, s, DEVICES[:1]) for s in smalls]
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0] * 3

    def small_loop(i: int) -> None:
        try:
            with OracleClient(f"127.0.0.1:{gated.port}", timeout_s=30) as c:
                k = i
                while not stop.is_set():
                    got = c.rank(SPACE, smalls[k % len(smalls)], DEVICES[:1])
                    _same(got, want_small[k % len(smalls)], DEVICES[:1])
                    done[i] += 1
                    k += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    before = _yields()
    threads = [threading.Thread(target=small_loop, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        with OracleClient(f"127.0.0.1:{gated.port}", timeout_s=120) as c:
            for _ in range(20):  # until one large call has met a small one in flight
                _same(c.rank(SPACE, big, DEVICES, **big_args), want_big, DEVICES)
                if _yields() > before:
                    break
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[0]
    assert all(done), done
    assert _yields() > before
    assert GATE.small_in_flight == 0
