"""Onboard this machine as a device: measure the oracle's reference architectures here,
register them, and optionally validate the oracle's ranking on fresh random architectures.

The client is duck-typed (``suggest_references``, ``register_device``, ``rank``), so any
object with those methods works (tests use a fake).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from client_sdk.measure.builders import input_resolution
from client_sdk.measure.harness import Backend, Harness, HarnessConfig, TimingStats
from oracle_server.spaces import SearchSpace, get_space

#: (space, genes (n, g), harness, progress, desc) -> one TimingStats per row
MeasureFn = Callable[[SearchSpace, np.ndarray, Harness, bool, str], list[TimingStats]]


def measure_architectures(
    space: SearchSpace, genes: np.ndarray, harness: Harness, progress: bool, desc: str
) -> list[TimingStats]:
    return harness.measure_many(space, genes, progress=progress, desc=desc)


@dataclass
class OnboardReport:
    """Everything ``onboard`` measured and what the oracle answered."""

    name: str
    space: str
    device: str
    threads: int
    batch_size: int
    warmup: int
    repeats: int
    backend: str
    contract: dict[str, Any]
    reference_archs: list[str]
    reference_latency_ms: np.ndarray  # (samples,) medians
    reference_cv: np.ndarray  # (samples,)
    remeasured: int  # reference architectures measured more than once (CV over threshold)
    head_kind: str
    num_samples: int
    expected_spearman: float
    monotonicity: float
    validate: int = 0
    validation_archs: list[str] = field(default_factory=list)
    validation_latency_ms: np.ndarray | None = None
    validation_predicted_ms: np.ndarray | None = None
    validation_spearman: float | None = None  # oracle ranking vs measured
    flops_spearman: float | None = None  # analytic FLOPs vs measured (the baseline)
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (arrays as lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
        return out


def hardware_description(device: str = "cpu") -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()[:256]
    except OSError:
        pass
    return (platform.processor() or platform.machine() or "unknown")[:256]


def build_contract(
    space: SearchSpace, *, threads: int, batch_size: int, device: str, config: HarnessConfig
) -> dict[str, Any]:
    res = input_resolution(space)
    per_arch = " input resolution per architecture (resolution gene);" if res is None else ""
    notes = (
        f"measured by client_sdk.measure on {platform.node() or 'this machine'} ({device});"
        f"{per_arch} median of {config.repeats} repeats after {config.warmup} warm-up runs, "
        f"torch.inference_mode, backend {config.backend}, random weights"
    )
    return {
        "unit": "ms/inference",
        "batch_size": batch_size,
        "input_resolution": res or 0,
        "threads": threads,
        "runtime": "torch",
        "runtime_version": torch.__version__,
        "precision": "fp32",
        "hardware": hardware_description(device),
        "notes": notes,
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    rho = spearmanr(a, b).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def onboard(
    client: Any,
    name: str,
    space: str,
    samples: int = 10,
    threads: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    validate: int = 0,
    repeats: int = 30,
    progress: bool = True,
    seed: int = 0,
    *,
    warmup: int = 10,
    backend: Backend = "eager",
    cv_threshold: float = 0.10,
    measure_fn: MeasureFn = measure_architectures,
    log: Callable[[str], None] | None = print,
) -> OnboardReport:
    """Measure ``samples`` oracle-suggested references here, register ``name``, validate.

    ``validate=N`` measures N random architectures (``space.sample(N, seed + 1)``) and
    reports the Spearman of the oracle's ranking and of analytic FLOPs against them.
    ``log`` receives progress lines (``None`` for silence).
    """
    if samples < 2:
        raise ValueError(f"need at least 2 samples, got {samples}")
    if validate < 0:
        raise ValueError(f"validate must be >= 0, got {validate}")
    say = log or (lambda _msg: None)
    sp = get_space(space)
    used_threads = threads if threads is not None else torch.get_num_threads()
    config = HarnessConfig(
        warmup=warmup,
        repeats=repeats,
        threads=threads,
        device=device,
        batch_size=batch_size,
        backend=backend,
        cv_threshold=cv_threshold,
    )
    harness = Harness(config)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    t0 = time.perf_counter()
    refs = sp.validate(client.suggest_references(space, samples, seed=seed))
    timings["suggest_s"] = time.perf_counter() - t0
    say(
        f"measuring {len(refs)} reference architectures of '{space}' on {device} "
        f"({used_threads} thread(s), batch {batch_size}, {repeats} repeats)"
    )

    t0 = time.perf_counter()
    ref_stats = measure_fn(sp, refs, harness, progress, "references")
    timings["measure_s"] = time.perf_counter() - t0
    ref_ms = np.array([s.median_ms for s in ref_stats], dtype=np.float64)

    contract = build_contract(
        sp, threads=used_threads, batch_size=batch_size, device=device, config=config
    )
    t0 = time.perf_counter()
    info = client.register_device(name, space, (refs, ref_ms), contract=contract)
    timings["register_s"] = time.perf_counter() - t0
    say(
        f"registered {space}/{name}: head {info.head_kind}, expected Spearman "
        f"{info.expected_spearman:.3f}, monotonicity {info.monotonicity:.3f}"
    )

    report = OnboardReport(
        name=name,
        space=space,
        device=device,
        threads=used_threads,
        batch_size=batch_size,
        warmup=warmup,
        repeats=repeats,
        backend=backend,
        contract=contract,
        reference_archs=[sp.format(g) for g in refs],
        reference_latency_ms=ref_ms,
        reference_cv=np.array([s.cv for s in ref_stats], dtype=np.float64),
        remeasured=sum(s.attempts > 1 for s in ref_stats),
        head_kind=str(info.head_kind),
        num_samples=int(info.num_samples),
        expected_spearman=float(info.expected_spearman),
        monotonicity=float(info.monotonicity),
        validate=validate,
        timings_s=timings,
    )
    if validate:
        _validate(client, sp, name, report, harness, measure_fn, validate, seed, progress)
        say(
            f"validation on {validate} random architectures: oracle Spearman "
            f"{report.validation_spearman:.3f}, FLOPs baseline {report.flops_spearman:.3f}"
        )
    timings["total_s"] = time.perf_counter() - t_start
    return report


def _validate(
    client: Any,
    sp: SearchSpace,
    name: str,
    report: OnboardReport,
    harness: Harness,
    measure_fn: MeasureFn,
    n: int,
    seed: int,
    progress: bool,
) -> None:
    genes = sp.sample(n, np.random.default_rng(seed + 1))
    t0 = time.perf_counter()
    stats = measure_fn(sp, genes, harness, progress, "validation")
    report.timings_s["validate_measure_s"] = time.perf_counter() - t0
    measured = np.array([s.median_ms for s in stats], dtype=np.float64)
    t0 = time.perf_counter()
    result = client.rank(sp.name, genes, [name])
    report.timings_s["validate_rank_s"] = time.perf_counter() - t0
    predicted = np.asarray(result.latency_ms[name], dtype=np.float64)
    report.validation_archs = [sp.format(g) for g in genes]
    report.validation_latency_ms = measured
    report.validation_predicted_ms = predicted
    report.validation_spearman = _spearman(predicted, measured)
    report.flops_spearman = _spearman(sp.flops(genes), measured)


def format_report(report: OnboardReport) -> str:
    """Human-readable summary for the CLI."""
    ms = report.reference_latency_ms
    lines = [
        f"device      {report.space}/{report.name}",
        f"measured on {report.contract.get('hardware', '?')} ({report.device}), "
        f"{report.threads} thread(s), batch {report.batch_size}, {report.backend}, "
        f"torch {report.contract.get('runtime_version', '?')}",
        f"references  {len(ms)} archs, latency {ms.min():.3f} .. {ms.max():.3f} ms "
        f"(median {np.median(ms):.3f}), CV median {np.median(report.reference_cv):.3f} "
        f"max {report.reference_cv.max():.3f}, re-measured {report.remeasured}",
        f"head        {report.head_kind} fit on {report.num_samples} samples",
        f"expected    Spearman {report.expected_spearman:.3f} (leave-one-out), "
        f"monotonicity {report.monotonicity:.3f}",
    ]
    if report.validate and report.validation_spearman is not None:
        lines.append(
            f"validation  {report.validate} random archs: oracle Spearman "
            f"{report.validation_spearman:.3f} vs FLOPs baseline {report.flops_spearman:.3f}"
        )
    t = report.timings_s
    parts = [f"{k.removesuffix('_s')} {v:.1f}s" for k, v in t.items()]
    lines.append("timings     " + ", ".join(parts))
    return "\n".join(lines)
