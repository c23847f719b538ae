"""search(): seeds, termination, checkpoint/resume identical to an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.search import load_checkpoint, search
from tests.unit.test_search_problem import FakeClient

DEVICES = ["pixel3", "raspi4"]
KW = {"evaluations": 640, "population": 32, "progress": False}


def _same(a, b):
    np.testing.assert_array_equal(a.archive["genes"], b.archive["genes"])
    np.testing.assert_array_equal(a.front.genes, b.front.genes)
    assert a.front.archs == b.front.archs
    for d in a.front.devices:
        np.testing.assert_array_equal(a.front.latency_ms[d], b.front.latency_ms[d])
    assert a.num_evaluations == b.num_evaluations
    assert a.generations == b.generations


def test_seed_reproducible_and_different_seeds_differ():
    a = search(FakeClient(), "nasbench201", DEVICES, seed=3, **KW)
    b = search(FakeClient(), "nasbench201", DEVICES, seed=3, **KW)
    c = search(FakeClient(), "nasbench201", DEVICES, seed=4, **KW)
    _same(a, b)
    assert not np.array_equal(a.archive["genes"], c.archive["genes"])


def test_exact_evaluation_budget():
    res = search(FakeClient(), "nasbench201", ["pixel3"], evaluations=100, population=32,
                 progress=False)
    assert res.num_evaluations == 100
    assert res.stopped_by == "evaluations"
    assert len(res.archive["genes"]) == 100


def test_resume_after_callback_stop_equals_uninterrupted(tmp_path):
    ref = search(FakeClient(), "nasbench201", DEVICES, seed=7, **KW)
    ckpt = tmp_path / "run.npz"
    first = search(FakeClient(), "nasbench201", DEVICES, seed=7, checkpoint=ckpt,
                   callback=lambda info: info["generation"] < 6, **KW)
    assert first.stopped_by == "callback" and first.generations == 6
    assert load_checkpoint(ckpt)["generation"] == 6
    client = FakeClient()
    resumed = search(client, "nasbench201", DEVICES, seed=7, checkpoint=ckpt, resume=True, **KW)
    assert resumed.resumed_from_generation == 6
    _same(ref, resumed)
    assert resumed.num_rpcs == ref.num_rpcs
    assert len(client.calls) == ref.num_rpcs - 6  # only the remaining generations
    assert [h["generation"] for h in resumed.history] == list(range(1, ref.generations + 1))


def test_resume_after_crash_equals_uninterrupted(tmp_path):
    ref = search(FakeClient(interval=0.1), "nasbench201", DEVICES, seed=1,
                 max_latency_ms=15.0, latency_mode="worst", **KW)
    ckpt = tmp_path / "crash.npz"
    with pytest.raises(KeyboardInterrupt):
        search(FakeClient(interval=0.1, fail_on_call=9), "nasbench201", DEVICES, seed=1,
               max_latency_ms=15.0, latency_mode="worst", checkpoint=ckpt, **KW)
    assert load_checkpoint(ckpt)["generation"] == 8
    resumed = search(FakeClient(interval=0.1), "nasbench201", DEVICES, seed=1,
                     max_latency_ms=15.0, latency_mode="worst", checkpoint=ckpt,
                     resume=True, **KW)
    _same(ref, resumed)
    np.testing.assert_array_equal(ref.front.near_front.genes, resumed.front.near_front.genes)


def test_resume_finished_run_needs_no_rpc_and_can_extend(tmp_path):
    ckpt = tmp_path / "done.npz"
    done = search(FakeClient(), "nasbench201", DEVICES, seed=2, checkpoint=ckpt, **KW)
    client = FakeClient()
    again = search(client, "nasbench201", DEVICES, seed=2, checkpoint=ckpt, resume=True, **KW)
    assert client.calls == []
    _same(done, again)
    longer = search(client, "nasbench201", DEVICES, seed=2, checkpoint=ckpt, resume=True,
                    evaluations=704, population=32, progress=False)
    assert longer.num_evaluations == 704 and len(client.calls) == 2


def test_resume_rejects_a_different_search(tmp_path):
    ckpt = tmp_path / "a.npz"
    search(FakeClient(), "nasbench201", DEVICES, seed=0, checkpoint=ckpt, evaluations=64,
           population=32, progress=False)
    with pytest.raises(ValueError, match="seed"):
        search(FakeClient(), "nasbench201", DEVICES, seed=1, checkpoint=ckpt, resume=True,
               evaluations=64, population=32, progress=False)


def test_generation_and_time_termination():
    res = search(FakeClient(), "nasbench201", ["pixel3"], generations=3, population=16,
                 progress=False)
    assert res.generations == 3 and res.stopped_by == "generations"
    res = search(FakeClient(), "nasbench201", ["pixel3"], time_limit_s=1e-6, population=16,
                 progress=False)
    assert res.generations == 1 and res.stopped_by == "time"


def test_progress_bar_runs(capsys):
    res = search(FakeClient(), "nasbench201", ["pixel3"], evaluations=64, population=32,
                 progress=True)
    assert res.num_evaluations == 64
