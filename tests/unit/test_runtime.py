"""runtime: the allocator tuning sets glibc's thresholds and leaves an operator's settings alone."""

from __future__ import annotations

import platform
import sys
from types import SimpleNamespace

import pytest

from oracle_server import runtime


class _FakeLibc:
    """Records ``mallopt`` calls; answers ``result`` (glibc: 1 = applied, 0 = refused)."""

    def __init__(self, result: int = 1) -> None:
        self.result = result
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


def _fake_ctypes(monkeypatch: pytest.MonkeyPatch, libc: _FakeLibc) -> list[str]:
    loaded: list[str] = []

    def cdll(name: str) -> _FakeLibc:
        loaded.append(name)
        return libc

    monkeypatch.setattr(runtime, "ctypes", SimpleNamespace(CDLL=cdll))
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(var, raising=False)
    return loaded


@pytest.mark.skipif(sys.platform != "linux", reason="glibc allocator tuning is Linux-only")
def test_allocator_tuning_sets_both_glibc_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc()
    loaded = _fake_ctypes(monkeypatch, libc)
    assert runtime.tune_allocator() is True
    assert loaded == ["libc.so.6"]
    # M_MMAP_THRESHOLD (-3) = 16 MiB, then M_TRIM_THRESHOLD (-1) = 32 MiB
    assert libc.calls == [(-3, 16 << 20), (-1, 32 << 20)]
    libc.calls.clear()
    assert runtime.tune_allocator(mmap_threshold=1 << 20, trim_threshold=2 << 20) is True
    assert libc.calls == [(-3, 1 << 20), (-1, 2 << 20)]


@pytest.mark.skipif(sys.platform != "linux", reason="glibc allocator tuning is Linux-only")
def test_allocator_tuning_reports_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(result=0)
    _fake_ctypes(monkeypatch, libc)
    assert runtime.tune_allocator() is False
    assert libc.calls == [(-3, 16 << 20)]  # the second setting is not tried


@pytest.mark.parametrize("var", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_allocator_tuning_respects_operator_settings(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    libc = _FakeLibc()
    loaded = _fake_ctypes(monkeypatch, libc)
    monkeypatch.setenv(var, "131072")
    assert runtime.tune_allocator() is False
    assert loaded == [] and libc.calls == []  # glibc is left alone


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)
def test_allocator_tuning_applies_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(var, raising=False)
    assert runtime.tune_allocator() is True
