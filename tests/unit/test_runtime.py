"""runtime: the allocator tuning leaves an operator's glibc settings alone."""

from __future__ import annotations

import pytest

from oracle_server import runtime


def test_allocator_tuning_respects_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert runtime.tune_allocator() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert isinstance(runtime.tune_allocator(), bool)
