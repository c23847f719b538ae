"""The ONNX Runtime harness: export (checker, outputs vs torch, cache), timing, onboarding."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import torch  # noqa: E402

from client_sdk.measure import onnx_runtime as ox  # noqa: E402
from client_sdk.measure.builders import build_model, example_input  # noqa: E402
from client_sdk.measure.harness import Harness, HarnessConfig  # noqa: E402
from client_sdk.measure.onboard import build_contract, format_report, onboard  # noqa: E402
from client_sdk.spaces import get_space  # noqa: E402
from tests.unit.test_onboard import FakeClient  # noqa: E402


@pytest.mark.parametrize(("space", "n"), [("nasbench201", 3), ("fbnet", 2), ("proxyless", 2)])
def test_export_passes_checker_and_runs_like_torch(space: str, n: int, tmp_path) -> None:
    sp = get_space(space)
    for i, genes in enumerate(sp.sample(n, rng=5)):
        model = build_model(sp, genes)
        path = ox.export_arch(sp, genes, tmp_path / f"{i}.onnx", model=model)
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == ox.OPSET
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["latency_oracle.space"] == space
        assert meta["latency_oracle.arch"] == sp.format(sp.validate(genes[None])[0])
        x = example_input(sp, genes)
        with torch.inference_mode():
            want = model(x).numpy()
        got = ox.OrtModel(path, ox.session_options(1))(x.numpy())
        assert got.shape == want.shape
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * scale)


def test_cache_hit_on_the_second_export(tmp_path) -> None:
    sp = get_space("nasbench201")
    genes = sp.sample(1, rng=3)[0]
    path, hit = ox.cached_export(sp, genes, tmp_path)
    assert not hit and path.is_file() and path.parent == tmp_path / "nasbench201"
    before, data = path.stat(), path.read_bytes()
    again, hit = ox.cached_export(sp, genes, tmp_path)
    # the same file, not rewritten (a hit only touches its mtime: least recently used)
    assert hit and again == path and path.stat().st_ino == before.st_ino
    assert path.read_bytes() == data and path.stat().st_mtime_ns >= before.st_mtime_ns
    # the key is the canonical architecture: another batch size is another file
    assert ox.onnx_path(sp, genes, tmp_path, batch_size=2) != path
    assert ox.arch_key(sp, genes) == ox.arch_key(sp, sp.validate(genes[None])[0])
    assert not list(tmp_path.rglob("*.tmp"))  # no leftovers of the atomic write


def test_ort_harness_measures_positive_finite_times(tmp_path) -> None:
    sp = get_space("nasbench201")
    genes = sp.sample(4, rng=7)
    cfg = HarnessConfig(runtime="onnxruntime", onnx_cache=str(tmp_path), threads=1,
                        warmup=1, rounds=2, runs=2)
    h = Harness(cfg)
    m = h.measure_interleaved(sp, genes, progress=False)
    assert m.samples_ms.shape == (4, 2, 2)
    assert np.all(np.isfinite(m.samples_ms)) and np.all(m.samples_ms > 0)
    assert np.all(m.latency_ms > 0)
    assert h.ort_builder.stats()["onnx_exported"] == 4
    h.measure_interleaved(sp, genes, progress=False)  # the second set: every file cached
    stats = h.ort_builder.stats()
    assert stats["onnx_cached"] == 4 and stats["onnx_exported"] == 4
    st = h.measure_arch(sp, genes[0])
    assert st.median_ms > 0 and len(st.samples_ms) == cfg.repeats


def test_config_checks_the_runtime() -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        HarnessConfig(runtime="tvm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cpu"):
        HarnessConfig(runtime="onnxruntime", device="cuda")
    with pytest.raises(ValueError, match="graph optimisation"):
        ox.OrtBuilder(graph_optimization="max")


def test_contract_records_the_runtime() -> None:
    cfg = HarnessConfig(runtime="onnxruntime", graph_optimization="all")
    c = build_contract(get_space("fbnet"), threads=2, batch_size=1, device="cpu", config=cfg)
    assert c["runtime"] == "onnxruntime" and c["runtime_version"] == ort.__version__
    for part in ("CPUExecutionProvider", "intra_op_num_threads 2", "inter_op_num_threads 1",
                 "ORT_ENABLE_ALL", f"opset {ox.OPSET}"):
        assert part in c["notes"]
    assert len(c["notes"]) <= 4096
    torch_c = build_contract(get_space("fbnet"), threads=2, batch_size=1, device="cpu",
                             config=HarnessConfig())
    assert torch_c["runtime"] == "torch" and torch_c["runtime_version"] == torch.__version__


def test_default_cache_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LATENCY_ORACLE_ONNX_CACHE", str(tmp_path / "c"))
    assert ox.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LATENCY_ORACLE_ONNX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ox.default_cache_dir() == tmp_path / "latency-oracle" / "onnx"


def test_onboard_with_onnxruntime(tmp_path) -> None:
    """The whole onboarding pipeline (real, tiny ORT timings): contract, report, cache."""
    client = FakeClient()
    report = onboard(
        client, "ortdev", "nasbench201", samples=4, threads=1, repeats=4, rounds=2,
        warmup=1, retest=3, retest_threshold=-1.0, validate=0, progress=False,
        runtime="onnxruntime", onnx_cache=str(tmp_path), log=None,
    )
    _, ms, contract = client.registered["ortdev"]
    assert contract["runtime"] == "onnxruntime" and contract["threads"] == 1
    assert len(ms) == 7 + 7 and np.all(np.asarray(ms) > 0)  # + the session check's pass
    assert report.runtime == "onnxruntime"
    assert report.onnx["onnx_exported"] == 7 and report.onnx["onnx_cached"] == 7
    text = format_report(report)
    assert f"onnxruntime {ort.__version__}" in text and "7 exported" in text


def test_sessions_do_not_spin_between_runs() -> None:
    """The harness keeps a session per architecture; idle sessions must not spin on the
    cores the timed one needs (2 threads: retest -0.15 spinning vs 0.76-0.81 not)."""

    so = ox.session_options(2)
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert "no intra-op spinning" in ox.describe(2)
