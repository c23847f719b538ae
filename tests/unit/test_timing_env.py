"""The harness's ``pin_cpus`` and ``flush_denormal``: checked at config time, applied while
timing (seen from inside the timed call), restored afterwards, recorded in the contract,
reachable from ``oracle device onboard``."""

from __future__ import annotations

import argparse
import os
import threading

import numpy as np
import pytest
import torch

from client_sdk.cli._parser import _parser, cpu_list
from client_sdk.measure import timing_env
from client_sdk.measure.contract import build_contract
from client_sdk.measure.harness import Harness, HarnessConfig
from client_sdk.measure.onboard_state import OnboardSettings
from client_sdk.measure.timing_env import denormals_flushed
from client_sdk.spaces import get_space

linux_only = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="CPU affinity needs Linux"
)


def _affinity(tid: int = 0) -> set[int]:
    return set(os.sched_getaffinity(tid))


class Probe:
    """A builder whose model records the process state each time it is called."""

    def __init__(self) -> None:
        self.seen: list[tuple[set[int] | None, bool]] = []
        self.others: list[set[int]] = []
        self.watch: int | None = None  # a thread's native id to look at as well

    def __call__(self, sp, genes, batch_size, device):
        def model(x):
            aff = _affinity() if hasattr(os, "sched_getaffinity") else None
            self.seen.append((aff, denormals_flushed()))
            if self.watch is not None:
                self.others.append(_affinity(self.watch))
            return x

        return model, torch.zeros(1)


def _harness(probe: Probe, **cfg) -> Harness:
    config = HarnessConfig(warmup=1, rounds=2, runs=2, round_warmup=0, threads=1, **cfg)
    return Harness(config, builder=probe)


def _genes(n: int = 3) -> np.ndarray:
    return get_space("nasbench201").sample(n, 0)


# --- config checks


@linux_only
def test_pin_cpus_validation() -> None:
    assert HarnessConfig().pin_cpus is None
    first = min(os.sched_getaffinity(0))
    assert HarnessConfig(pin_cpus=[first, first]).pin_cpus == (first,)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        HarnessConfig(pin_cpus=())
    with pytest.raises(ValueError, match=r"CPU\(s\) \[100000\] do not exist"):
        HarnessConfig(pin_cpus=(100000,))
    with pytest.raises(ValueError, match="integers"):
        HarnessConfig(pin_cpus=("zero",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not available"):
        OnboardSettings(name="d", space="nasbench201", pin_cpus=(100000,))


def test_pin_cpus_without_affinity_is_a_config_error(monkeypatch) -> None:
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    with pytest.raises(ValueError, match="sched_setaffinity"):
        HarnessConfig(pin_cpus=(0,))
    HarnessConfig()  # no pinning asked: fine anywhere


def test_flush_denormal_unsupported_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: False)
    with pytest.raises(ValueError, match="cannot flush denormals"):
        HarnessConfig(flush_denormal=True)


# --- applied while timing, restored after


@linux_only
def test_pinned_while_timing_and_restored() -> None:
    before = _affinity()
    cpu = max(before)
    ready, done = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (ready.set(), done.wait(30)))
    other.start()
    ready.wait(5)
    try:
        probe = Probe()
        probe.watch = other.native_id
        harness = _harness(probe, pin_cpus=(cpu,))
        harness.measure_interleaved("nasbench201", _genes(), progress=False)
        harness.measure_arch("nasbench201", _genes(1)[0])
        assert probe.seen and all(aff == {cpu} for aff, _ in probe.seen)
        # every thread of the process, not only the calling one
        assert probe.others and all(aff == {cpu} for aff in probe.others)
        assert _affinity() == before
        assert _affinity(other.native_id) == before
    finally:
        done.set()
        other.join()


@linux_only
def test_not_pinned_by_default() -> None:
    before = _affinity()
    probe = Probe()
    _harness(probe).measure_interleaved("nasbench201", _genes(), progress=False)
    assert all(aff == before for aff, _ in probe.seen)


@pytest.mark.parametrize("start_flushed", [False, True])
def test_denormals_flushed_while_timing_and_restored(start_flushed: bool) -> None:
    torch.set_flush_denormal(start_flushed)
    try:
        assert denormals_flushed() is start_flushed
        probe = Probe()
        harness = _harness(probe, flush_denormal=True)
        harness.measure_interleaved("nasbench201", _genes(), progress=False)
        harness.measure_arch("nasbench201", _genes(1)[0])
        assert probe.seen and all(flushed for _, flushed in probe.seen)
        assert denormals_flushed() is start_flushed
    finally:
        torch.set_flush_denormal(False)


def test_denormals_not_flushed_by_default() -> None:
    probe = Probe()
    _harness(probe).measure_interleaved("nasbench201", _genes(), progress=False)
    assert probe.seen and not any(flushed for _, flushed in probe.seen)


def test_flush_restored_after_an_error(monkeypatch) -> None:
    def broken(sp, genes, batch_size, device):
        raise RuntimeError("build failed")

    harness = Harness(HarnessConfig(flush_denormal=True, warmup=0), builder=broken)
    with pytest.raises(RuntimeError, match="build failed"):
        harness.measure_interleaved("nasbench201", _genes(), progress=False)
    assert not denormals_flushed()


def test_timing_environment_calls_in_order(monkeypatch) -> None:
    """A spy on torch.set_flush_denormal: on before the timed calls, the old state after."""
    calls: list[tuple[str, bool]] = []
    real = torch.set_flush_denormal
    monkeypatch.setattr(timing_env, "denormals_flushed", lambda: False)

    def spy(on: bool) -> bool:
        calls.append(("set", on))
        return real(on)

    monkeypatch.setattr(torch, "set_flush_denormal", spy)
    config = HarnessConfig(flush_denormal=True, warmup=0, rounds=2, runs=1, round_warmup=0)
    calls.clear()  # the config's support check

    def builder(sp, genes, batch_size, device):
        return (lambda x: calls.append(("run", True))), torch.zeros(1)

    Harness(config, builder=builder).measure_interleaved("nasbench201", _genes(2), progress=False)
    assert calls[0] == ("set", True) and calls[-1] == ("set", False)
    assert [c for c in calls[1:-1] if c[0] == "set"] == []
    assert sum(c[0] == "run" for c in calls) == 4


# --- ONNX Runtime


def test_onnxruntime_session_option_and_restore(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from client_sdk.measure import onnx_runtime as ox

    key = "session.set_denormal_as_zero"
    assert ox.session_options(1, flush_denormal=True).get_session_config_entry(key) == "1"
    with pytest.raises(RuntimeError):  # not set at all by default
        ox.session_options(1).get_session_config_entry(key)
    cfg = HarnessConfig(
        runtime="onnxruntime", flush_denormal=True, threads=1, warmup=0, rounds=2, runs=1,
        onnx_cache=str(tmp_path),
    )  # fmt: skip
    harness = Harness(cfg)
    m = harness.measure_interleaved("nasbench201", _genes(2), progress=False)
    assert m.samples_ms.shape == (2, 2, 1) and np.all(m.samples_ms > 0)
    assert harness.ort_builder.options.get_session_config_entry(key) == "1"
    # an ONNX Runtime session with the option sets the building thread's flags for good;
    # the harness puts them back
    assert not denormals_flushed()
    notes = build_contract(
        get_space("nasbench201"), threads=1, batch_size=1, device="cpu", config=cfg
    )["notes"]
    assert "session.set_denormal_as_zero" in notes and "denormals flushed to zero" in notes


# --- contract and command line


@linux_only
def test_contract_records_both() -> None:
    sp = get_space("fbnet")
    cpu = min(os.sched_getaffinity(0))
    on = HarnessConfig(pin_cpus=(cpu,), flush_denormal=True)
    notes = build_contract(sp, threads=1, batch_size=1, device="cpu", config=on)["notes"]
    assert f"pinned to CPUs {cpu}" in notes and "denormals flushed to zero" in notes
    off = build_contract(sp, threads=1, batch_size=1, device="cpu", config=HarnessConfig())
    assert "CPUs not pinned" in off["notes"] and "denormals not flushed" in off["notes"]


def test_onboard_settings_pass_both_to_the_harness() -> None:
    cpu = min(timing_env.allowed_cpus())
    s = OnboardSettings(
        name="d",
        space="nasbench201",
        flush_denormal=True,
        pin_cpus=(cpu,) if hasattr(os, "sched_setaffinity") else None,
    )
    cfg = s.harness_config()
    assert cfg.flush_denormal and cfg.pin_cpus == s.pin_cpus


def test_cli_flags() -> None:
    args = _parser().parse_args(["device", "onboard", "d", "--pin-cpus", "1,0", "--flush-denormal"])
    assert args.pin_cpus == (0, 1) and args.flush_denormal is True
    args = _parser().parse_args(["device", "onboard", "d"])
    assert args.pin_cpus is None and args.flush_denormal is False
    assert cpu_list("0-2,5") == (0, 1, 2, 5)
    for bad in ("a", "3-1", "-1", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            cpu_list(bad)
    with pytest.raises(SystemExit):
        _parser().parse_args(["device", "onboard", "d", "--pin-cpus", "x"])


@linux_only
def test_cli_passes_both_to_onboard(monkeypatch) -> None:
    from client_sdk.cli import device
    from client_sdk.measure import onboard as onboard_mod

    seen: dict = {}

    class Stop(Exception):
        pass

    def fake_onboard(client, name, space, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(onboard_mod, "onboard", fake_onboard)
    cpu = min(os.sched_getaffinity(0))
    args = _parser().parse_args(
        [
            "device",
            "onboard",
            "d",
            "--space",
            "nasbench201",
            "--pin-cpus",
            str(cpu),
            "--flush-denormal",
        ]
    )
    args.name = args.name or args.name_pos
    with pytest.raises(Stop):
        device.cmd_device(args, None)  # type: ignore[arg-type]
    assert seen["pin_cpus"] == (cpu,) and seen["flush_denormal"] is True
    bad = _parser().parse_args(["device", "onboard", "d", "--pin-cpus", "100000"])
    bad.name = bad.name or bad.name_pos
    with pytest.raises(SystemExit, match="not available"):
        device.cmd_device(bad, None)  # type: ignore[arg-type]


@linux_only
def test_fewer_cpus_than_threads_warns() -> None:
    cpu = min(os.sched_getaffinity(0))
    with pytest.warns(UserWarning, match="2 threads pinned to 1 CPU"):
        HarnessConfig(pin_cpus=(cpu,), threads=2)
