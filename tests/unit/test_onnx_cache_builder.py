"""``OrtBuilder``/``cached_export`` under the ONNX cache's size cap: eviction after each export,
the run's own files kept, hits marking files used, atomic exports, a file vanishing under a
concurrent prune. Fake exports (tiny dummy files) unless the real export is the point."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from client_sdk.measure import onnx_cache as oc
from client_sdk.measure import onnx_runtime as ox
from client_sdk.spaces import get_space
from tests.unit.test_onboard import FakeClient
from tests.unit.test_onnx_cache import KB, put

SP = get_space("nasbench201")


class StubModel:
    def __init__(self, path, options) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(path)


@pytest.fixture
def fake_export(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """``export_arch`` writes 100 KB of zeros; sessions are stubs; returns the written paths."""
    written: list[Path] = []

    def export_arch(sp, genes, path, *, batch_size=1, opset=ox.OPSET, model=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 100 * KB)
        written.append(path)
        return path

    monkeypatch.setattr(ox, "export_arch", export_arch)
    monkeypatch.setattr(ox, "OrtModel", StubModel)
    monkeypatch.setenv(oc.ENV_MAX_MB, "")
    return written


def archs(n: int, seed: int = 0) -> np.ndarray:
    return SP.sample(n, rng=seed)


def test_builder_evicts_old_files_and_keeps_its_own(tmp_path: Path, fake_export) -> None:
    old = [put(tmp_path, i, size=100 * KB, age_s=1000 - i, space="fbnet") for i in range(5)]
    b = ox.OrtBuilder(tmp_path, threads=1, max_mb=0.3)  # 300 KB: three files
    for g in archs(2):
        b(SP, g, 1, "cpu")
    # 7 files of 100 KB -> 3: the 4 oldest go, the builder's 2 stay
    assert [p.exists() for p in old] == [False, False, False, False, True]
    assert all(p.exists() for p in fake_export)
    s = b.stats()
    assert s["onnx_evicted"] == 4 and s["onnx_evicted_mb"] == round(400 * KB / oc.MB, 1)
    assert s["onnx_cache_max_mb"] == 0.3 and s["onnx_exported"] == 2
    for g in archs(3, seed=1):  # more than the cap: the run's own files are never evicted
        b(SP, g, 1, "cpu")
    assert all(p.exists() for p in fake_export) and len(fake_export) == 5
    assert not old[4].exists() and oc.usage(tmp_path) == (5, 500 * KB)


def test_unlimited_cap_evicts_nothing(tmp_path: Path, fake_export, monkeypatch) -> None:
    old = [put(tmp_path, i, size=100 * KB, age_s=1000) for i in range(5)]
    monkeypatch.setenv(oc.ENV_MAX_MB, "0")
    b = ox.OrtBuilder(tmp_path, threads=1)  # the environment's cap: unlimited
    for g in archs(3):
        b(SP, g, 1, "cpu")
    assert all(p.exists() for p in old) and b.stats()["onnx_evicted"] == 0
    assert b.stats()["onnx_cache_max_mb"] == 0
    monkeypatch.setenv(oc.ENV_MAX_MB, "-5")
    with pytest.raises(ValueError, match="LATENCY_ORACLE_ONNX_CACHE_MAX_MB"):
        ox.OrtBuilder(tmp_path, threads=1)


def test_hits_mark_files_used(tmp_path: Path, fake_export) -> None:
    g = archs(3)
    for x in g:  # three files, then made old: g[0] the oldest
        ox.cached_export(SP, x, tmp_path, max_mb=0)
    for i, p in enumerate(fake_export):
        os.utime(p, (time.time() - 1000 + i,) * 2)
    path, hit = ox.cached_export(SP, g[0], tmp_path, max_mb=0)  # a hit: g[0] is now newest
    assert hit and path == fake_export[0]
    ox.cached_export(SP, archs(1, seed=9)[0], tmp_path, max_mb=0.3)  # 4 files, cap 3
    assert [p.exists() for p in fake_export] == [True, False, True, True]


def test_live_builders_protect_each_other(tmp_path: Path, fake_export) -> None:
    first = ox.OrtBuilder(tmp_path, threads=1, max_mb=0.1)
    first(SP, archs(1)[0], 1, "cpu")
    os.utime(fake_export[0], (time.time() - 1000,) * 2)
    second = ox.OrtBuilder(tmp_path, threads=1, max_mb=0.1)
    second(SP, archs(1, seed=1)[0], 1, "cpu")
    assert fake_export[0].exists() and second.stats()["onnx_evicted"] == 0
    del first
    gc.collect()  # a finished builder's files may go
    second(SP, archs(1, seed=2)[0], 1, "cpu")
    assert not fake_export[0].exists() and second.stats()["onnx_evicted"] == 1


def test_a_file_evicted_by_another_process_is_exported_again(
    tmp_path: Path, fake_export, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = archs(1)[0]
    ox.cached_export(SP, g, tmp_path)
    monkeypatch.setattr(oc, "touch", lambda path: Path(path).unlink())  # gone after the hit
    b = ox.OrtBuilder(tmp_path, threads=1)
    model, _ = b(SP, g, 1, "cpu")
    assert model.path.is_file() and len(fake_export) == 2
    assert (b.cached, b.exported) == (1, 1)


def test_export_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed export leaves neither the file nor its temporary; a good one appears only
    by ``os.replace`` of a finished temporary."""
    g = archs(1)[0]
    path = ox.onnx_path(SP, g, tmp_path)

    def refuse(*_a, **_k):
        assert not path.exists() and len(list(path.parent.glob(".*.tmp"))) == 1
        raise RuntimeError("checker says no")

    with monkeypatch.context() as m:
        m.setattr(ox.onnx.checker, "check_model", refuse)
        with pytest.raises(RuntimeError, match="checker says no"):
            ox.cached_export(SP, g, tmp_path)
    assert list(path.parent.iterdir()) == []
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        assert Path(src).name.endswith(".tmp") and Path(src).stat().st_size > 0
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(ox.os, "replace", spy)
    out, hit = ox.cached_export(SP, g, tmp_path)
    assert not hit and out == path and replaced[-1][1] == str(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_export_kit_prunes_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``oracle device export``'s plumbing, with real (small) exports: the kit's files are
    all written and the older cache files beyond the cap are evicted."""
    from client_sdk.measure.export import export_kit

    monkeypatch.setenv(oc.ENV_MAX_MB, "")
    cache = tmp_path / "cache"
    old = [put(cache, i, size=oc.MB, age_s=1000 - i) for i in range(5)]
    with pytest.raises(ValueError, match="max_mb must be"):
        export_kit(FakeClient(), "nasbench201", tmp_path / "bad", samples=2, retest=1,
                   onnx_cache=cache, onnx_cache_max_mb=-1, log=None)  # fmt: skip
    assert not (tmp_path / "bad").exists()  # refused before any work
    manifest = export_kit(FakeClient(), "nasbench201", tmp_path / "kit", samples=2, retest=1,
                          onnx_cache=cache, onnx_cache_max_mb=5, log=None)  # fmt: skip
    assert len(manifest["files"]) == 3
    assert all((tmp_path / "kit" / e["file"]).is_file() for e in manifest["files"])
    kit = [f for f in oc.scan(cache)[0] if f.path.parent.name == "nasbench201"]
    kit_bytes = sum(f.size for f in kit)
    # the kit's files stay (~1 MB each); the old ones go, oldest first, until the cache
    # fits in 5 MB
    kept = (5 * oc.MB - kit_bytes) // oc.MB
    assert len(kit) == 3 and 0 < kept < 5
    assert [p.exists() for p in old] == [False] * (5 - kept) + [True] * kept
    assert oc.usage(cache) == (3 + kept, kit_bytes + kept * oc.MB)
