"""Onboard this machine as a device: measure the oracle's reference architectures here,
register them, optionally keep measuring the architectures the oracle is least sure about
until its leave-one-out estimate reaches a target (adaptive onboarding), and optionally
validate the oracle's ranking on fresh random architectures.

Every set of architectures is timed by the interleaved harness
(``Harness.measure_interleaved``), which gives the latencies *and* their test-retest
Spearman (from two independent halves of the measurement). Noisy measurements cap how well
any ranking can agree with them: ``ceiling = sqrt(retest)`` is reported beside every
Spearman, and a low retest is re-measured once, then warned about.

That retest is *within* one measured set: the rounds are interleaved over a few seconds, so
it cannot see a device whose speed or ranking changes between sets minutes apart (a shared
VM whose neighbours contend for memory bandwidth, thermal throttling). The **session check**
(on by default) measures the references and the retest architectures again in a later,
separate set (with the validation architectures when there are some) and reports the
Spearman between the two passes (``session_retest_spearman``, the issue's "two passes a few
minutes apart") and their latency ratio (``session_scale``), with a warning when either is
off: rankings and absolute budgets on such a device cannot be more stable than that.

The client is duck-typed (``suggest_references``, ``register_device``, ``add_measurements``,
``rank``), so any object with those methods works (tests use a fake).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from client_sdk import stats as _stats
from client_sdk.measure.builders import input_resolution
from client_sdk.measure.harness import (
    Backend,
    Harness,
    HarnessConfig,
    InterleavedMeasurement,
    Runtime,
    Statistic,
    retest_ceiling,
)
from client_sdk.spaces import SearchSpace, get_space

#: (space, genes (n, g), harness, progress, desc) -> the interleaved measurement of the rows
MeasureFn = Callable[[SearchSpace, np.ndarray, Harness, bool, str], InterleavedMeasurement]

#: anchors re-measured in every adaptive round to put its latencies on the first round's scale
NUM_ANCHORS = 3
#: warn when the session check's latencies differ from the first pass's by more than this
SESSION_SCALE_TOLERANCE = 0.10


def measure_architectures(
    space: SearchSpace, genes: np.ndarray, harness: Harness, progress: bool | None, desc: str
) -> InterleavedMeasurement:
    return harness.measure_interleaved(space, genes, progress=progress, desc=desc)


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
    reference_archs: list[str]  # every architecture registered, in measurement order
    reference_latency_ms: np.ndarray  # (samples,) registered latencies
    reference_cv: np.ndarray  # (samples,) within-architecture CV of the timed runs
    remeasured: int  # measurement sets measured twice because their retest was low
    head_kind: str
    num_samples: int
    expected_spearman: float
    monotonicity: float
    statistic: str = "median"
    rounds: int = 6
    runs: int = 5
    #: the device's test-retest Spearman on random architectures (the validation set when
    #: there is one, else the retest subset), stepped up from the split halves; nan if none
    retest_spearman: float = float("nan")
    #: sqrt(retest): what a perfect predictor can be expected to reach against them
    ceiling: float = float("nan")
    retest_archs: int = 0
    #: retest archs registered as samples too (``reference_archs[samples:samples + this]``)
    registered_retest: int = 0
    reference_retest_spearman: float = float("nan")  # the same on the references
    drift: float = 0.0  # largest per-round drift seen (max/min scale - 1)
    #: one entry per onboarding round: samples, expected Spearman, anchor scale, ...
    progress: list[dict[str, Any]] = field(default_factory=list)
    target_spearman: float | None = None
    target_reached: bool | None = None
    warnings: list[str] = field(default_factory=list)
    validate: int = 0
    validation_archs: list[str] = field(default_factory=list)
    validation_latency_ms: np.ndarray | None = None
    validation_predicted_ms: np.ndarray | None = None
    validation_spearman: float | None = None  # oracle ranking vs measured
    flops_spearman: float | None = None  # analytic FLOPs vs measured (the baseline)
    validation_retest_spearman: float | None = None  # retest of the validation measurements
    #: session check: Spearman between the first pass and a later, separate pass over the
    #: same ``session_archs`` architectures (references + retest archs); nan if not run
    session_retest_spearman: float = float("nan")
    #: sqrt(session retest): a predictor of the device's stable ranking vs one pass
    session_ceiling: float = float("nan")
    session_scale: float = float("nan")  # median latency ratio, later pass / first pass
    session_archs: int = 0
    #: the later pass's latencies of the session archs: the first ``samples`` are the
    #: references (``reference_archs[:samples]``), then the retest archs
    session_latency_ms: np.ndarray | None = None
    #: measurements of the later pass added to the device (its registered archs of the
    #: first pass again); the registry keeps one sample per architecture (their median)
    session_added: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    runtime: str = "torch"  # torch (``backend``) or onnxruntime
    #: onnxruntime: files exported / found in the cache, export seconds, the cache folder
    onnx: dict[str, Any] = field(default_factory=dict)

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
    runtime, version = "torch", torch.__version__
    how = f"torch.inference_mode, backend {config.backend}"
    if config.runtime == "onnxruntime":
        from client_sdk.measure import onnx_runtime

        runtime, version = "onnxruntime", onnx_runtime.runtime_version()
        how = onnx_runtime.describe(threads, config.graph_optimization)
    notes = (
        f"measured by client_sdk.measure on {platform.node() or 'this machine'} ({device});"
        f"{per_arch} {config.statistic} of {config.rounds} interleaved rounds x {config.runs} "
        f"runs after {config.warmup} warm-up runs (drift-normalised per round), "
        f"{how}, random weights"
    )
    return {
        "unit": "ms/inference",
        "batch_size": batch_size,
        "input_resolution": res or 0,
        "threads": threads,
        "runtime": runtime,
        "runtime_version": version,
        "precision": "fp32",
        "hardware": hardware_description(device),
        "notes": notes,
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (``client_sdk.stats``); 0 when undefined (a constant side, a NaN)."""
    return _stats.spearman(a, b, undefined=0.0)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


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
    progress: bool | None = None,
    seed: int = 0,
    *,
    warmup: int = 10,
    backend: Backend = "eager",
    cv_threshold: float = 0.10,
    rounds: int = 6,
    statistic: Statistic = "median",
    target_spearman: float | None = None,
    max_samples: int | None = None,
    round_size: int = 5,
    retest: int | None = None,
    retest_threshold: float = 0.90,
    remeasure_low_retest: bool = True,
    session_check: bool = True,
    register_retest: bool = True,
    runtime: Runtime = "torch",
    onnx_cache: str | None = None,
    graph_optimization: str = "all",
    measure_fn: MeasureFn = measure_architectures,
    log: Callable[[str], None] | None = print,
) -> OnboardReport:
    """Measure ``samples`` oracle-suggested references here, register ``name``, refine, validate.

    Each measured set is timed in ``rounds`` interleaved rounds of ``ceil(repeats / rounds)``
    runs per architecture; ``statistic`` summarises the runs (see
    ``benchmarks/results/harness_study.json`` for the evidence behind the default).

    ``target_spearman=T``: after registering, ask the oracle for the ``round_size``
    architectures its head is least sure about (``SuggestReferences`` with ``device``),
    measure them with ``NUM_ANCHORS`` already measured references (whose re-measurement puts
    the new latencies on the first round's scale), ``AddMeasurements``, and repeat until the
    leave-one-out expected Spearman reaches T or ``max_samples`` are registered.

    ``retest=N`` random architectures are measured with the references only for the
    device's test-retest Spearman and ceiling (default: 20 when ``validate < 20`` or
    ``session_check``, else none since the validation set gives them). A measurement whose
    test-retest Spearman is under ``retest_threshold`` is measured once more
    (``remeasure_low_retest``) and merged, then warned about.

    ``register_retest``: register the retest architectures' latencies with the references'
    (measured in the same interleaved set, so on the same scale): the device gets
    ``samples + retest`` samples for the measuring it paid for anyway (random architectures,
    like the ones a search ranks). False: only the references are registered.

    ``session_check``: measure the references and the retest architectures once more in a
    later set (the validation set's, else one of their own at the end) and report the
    Spearman and latency ratio between the two passes (see the module docstring); a
    Spearman under ``retest_threshold`` or a ratio off by more than
    ``SESSION_SCALE_TOLERANCE`` is warned about. The later pass of the registered archs is
    then added to the device (``AddMeasurements``, after the validation was scored): the
    server fits the per-architecture median and widens the device's interval by the spread
    of the repeated measurements.

    ``runtime="onnxruntime"``: every architecture is exported to ONNX once (cached under
    ``onnx_cache``, default ``onnx_runtime.default_cache_dir()``) and timed with an ONNX
    Runtime CPU session (``threads`` intra-op threads, one inter-op thread,
    ``graph_optimization`` level) in the same interleaved rounds; the contract records it.

    ``validate=N`` measures N random architectures (``space.sample(N, seed + 1)``) and
    reports the Spearman of the oracle's ranking and of analytic FLOPs against them, beside
    the ceiling. ``log`` receives progress lines (``None`` for silence).
    """
    if samples < 2:
        raise ValueError(f"need at least 2 samples, got {samples}")
    if validate < 0:
        raise ValueError(f"validate must be >= 0, got {validate}")
    if target_spearman is not None and not -1.0 < target_spearman <= 1.0:
        raise ValueError(f"target_spearman must be in (-1, 1], got {target_spearman}")
    if round_size < 1:
        raise ValueError(f"round_size must be >= 1, got {round_size}")
    if rounds < 2:
        raise ValueError(f"need rounds >= 2 (two halves give the retest ceiling), got {rounds}")
    n_retest = (20 if validate < 20 or session_check else 0) if retest is None else retest
    if n_retest < 0:
        raise ValueError(f"retest must be >= 0, got {retest}")
    budget = max_samples if max_samples is not None else (
        samples if target_spearman is None else 4 * samples
    ) + (n_retest if register_retest else 0)
    if budget < samples:
        raise ValueError(f"max_samples ({budget}) is below samples ({samples})")
    say = log or (lambda _msg: None)
    if runtime == "onnxruntime":  # a missing onnx/onnxruntime is said before any work
        from client_sdk.measure import onnx_runtime  # noqa: F401
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
        rounds=rounds,
        runs=max(1, -(-repeats // rounds)),
        statistic=statistic,
        seed=seed,
        runtime=runtime,
        onnx_cache=onnx_cache,
        graph_optimization=graph_optimization,
    )
    harness = Harness(config)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t_start = time.perf_counter()
    state = {"remeasured": 0, "drift": 0.0}

    def measure(genes: np.ndarray, desc: str) -> InterleavedMeasurement:
        """Measure; once more if the retest is low; note drift and warn."""
        m = measure_fn(sp, genes, harness, progress, desc)
        rho = m.retest_spearman
        if remeasure_low_retest and np.isfinite(rho) and rho < retest_threshold:
            say(f"{desc}: retest Spearman {rho:.3f} < {retest_threshold:.2f}, measuring again")
            m = m.merge(measure_fn(sp, genes, harness, progress, f"{desc} (again)"))
            state["remeasured"] += 1
            rho = m.retest_spearman
            if np.isfinite(rho) and rho < retest_threshold:
                warnings.append(
                    f"{desc}: test-retest Spearman {rho:.3f} after re-measuring (threshold "
                    f"{retest_threshold:.2f}): this device is too noisy for a ranking to "
                    "agree better than that with its measurements; use a quieter machine, "
                    "fixed clocks, or more rounds"
                )
                say("warning: " + warnings[-1])
        if m.drifted:
            warnings.append(
                f"{desc}: the device drifted {100 * m.drift:.0f} % between rounds "
                "(normalised per round)"
            )
            say("warning: " + warnings[-1])
        state["drift"] = max(state["drift"], m.drift)
        return m

    t0 = time.perf_counter()
    refs = sp.validate(client.suggest_references(space, samples, seed=seed))
    timings["suggest_s"] = time.perf_counter() - t0
    retest_genes = _random_archs(sp, n_retest, seed + 2, exclude=refs)
    say(
        f"measuring {len(refs)} reference architectures of '{space}' on {device} "
        f"({runtime}, {used_threads} thread(s), batch {batch_size}, {config.rounds} rounds x "
        f"{config.runs} runs, {config.statistic})"
        + (f" with {len(retest_genes)} random archs for the retest ceiling" if n_retest else "")
    )

    t0 = time.perf_counter()
    measured = np.concatenate([refs, retest_genes])  # one interleaved set
    first = measure(measured, "references")
    timings["measure_s"] = time.perf_counter() - t0
    ref_m = first.select(slice(0, len(refs)))
    measured_ms = first.latency_ms  # drift scale estimated on the whole set
    ref_ms = measured_ms[: len(refs)]
    retest_rho = float("nan")
    if n_retest:
        retest_rho = first.select(slice(len(refs), None)).retest_spearman

    contract = build_contract(
        sp, threads=used_threads, batch_size=batch_size, device=device, config=config
    )
    t0 = time.perf_counter()
    n_first = len(refs) + (len(retest_genes) if register_retest else 0)
    first_genes, first_ms = measured[:n_first], measured_ms[:n_first]
    info = client.register_device(name, space, (first_genes, first_ms), contract=contract)
    timings["register_s"] = time.perf_counter() - t0
    say(
        f"registered {space}/{name} from {n_first} archs ({len(refs)} references"
        + (f" + {n_first - len(refs)} retest archs" if n_first > len(refs) else "")
        + f"): head {info.head_kind}, expected Spearman "
        f"{info.expected_spearman:.3f}, monotonicity {info.monotonicity:.3f}"
        + (f", retest Spearman {retest_rho:.3f}" if n_retest else "")
    )
    history = [{
        "round": 1, "added": n_first, "samples": int(info.num_samples),
        "expected_spearman": float(info.expected_spearman), "anchor_scale": 1.0,
        "retest_spearman": retest_rho,
    }]
    all_genes, all_ms = [first_genes], [first_ms]
    all_cv = [first.cv[:n_first]]

    if target_spearman is not None:
        t0 = time.perf_counter()
        info = _refine(
            client, sp, name, info, target_spearman, budget, round_size, seed, refs, ref_ms,
            measure, say, history, all_genes, all_ms, all_cv, retest_rho,
        )
        timings["adaptive_s"] = time.perf_counter() - t0

    genes_all = np.concatenate(all_genes)
    report = OnboardReport(
        name=name,
        space=space,
        device=device,
        threads=used_threads,
        batch_size=batch_size,
        warmup=warmup,
        repeats=config.rounds * config.runs,
        backend=backend,
        contract=contract,
        reference_archs=[sp.format(g) for g in genes_all],
        reference_latency_ms=np.concatenate(all_ms),
        reference_cv=np.concatenate(all_cv),
        remeasured=0,
        head_kind=str(info.head_kind),
        num_samples=int(info.num_samples),
        expected_spearman=float(info.expected_spearman),
        monotonicity=float(info.monotonicity),
        statistic=config.statistic,
        rounds=config.rounds,
        runs=config.runs,
        retest_spearman=retest_rho,
        ceiling=retest_ceiling(retest_rho),
        retest_archs=len(retest_genes),
        registered_retest=n_first - len(refs),
        reference_retest_spearman=ref_m.retest_spearman,
        progress=history,
        target_spearman=target_spearman,
        target_reached=(
            None if target_spearman is None
            else bool(info.expected_spearman >= target_spearman)
        ),
        warnings=warnings,
        validate=validate,
        timings_s=timings,
        runtime=runtime,
    )
    session = (measured, measured_ms) if session_check else None
    if validate:
        _validate(client, sp, name, report, harness, measure, validate, seed, session)
        say(
            f"validation on {validate} random architectures: oracle Spearman "
            f"{report.validation_spearman:.3f}, FLOPs baseline {report.flops_spearman:.3f}, "
            f"retest {_fmt(report.validation_retest_spearman)}, ceiling {_fmt(report.ceiling)}"
        )
    elif session is not None:
        t0 = time.perf_counter()
        again = measure(session[0], "session check")
        timings["session_measure_s"] = time.perf_counter() - t0
        _session_check(report, session[1], again.latency_ms)
    if session is not None:
        say(
            f"session check on {report.session_archs} archs measured again in a later pass: "
            f"Spearman between the passes {_fmt(report.session_retest_spearman)} (ceiling "
            f"{_fmt(report.session_ceiling)}), latency ratio {report.session_scale:.3f}"
        )
        for w in _session_warnings(report, retest_threshold):
            warnings.append(w)
            say("warning: " + w)
        # the later pass joins the device (after any validation was scored): the registry
        # fits one sample per architecture (the median of its measurements), and the
        # spread of the repeats widens the device's stated uncertainty
        assert report.session_latency_ms is not None
        again_ms = report.session_latency_ms[:n_first]
        info = client.add_measurements(name, (first_genes, again_ms), sp.name)
        report.session_added = len(again_ms)
        report.num_samples = int(info.num_samples)
        report.expected_spearman = float(info.expected_spearman)
        report.head_kind = str(info.head_kind)
        say(f"added the later pass to {space}/{name}: {report.num_samples} measurements, "
            f"expected Spearman {info.expected_spearman:.3f}")
    report.remeasured = state["remeasured"]
    report.drift = float(state["drift"])
    if harness.ort_builder is not None:  # the ONNX Runtime builder's export counters
        report.onnx = harness.ort_builder.stats()
    timings["total_s"] = time.perf_counter() - t_start
    return report


def _random_archs(
    sp: SearchSpace, n: int, seed: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """``n`` random architectures of the space, none of them in ``exclude``."""
    if n <= 0:
        return sp.sample(1, np.random.default_rng(seed))[:0]
    genes = sp.sample(2 * n + 8, np.random.default_rng(seed))
    _, first = np.unique(genes, axis=0, return_index=True)
    genes = genes[np.sort(first)]
    if exclude is not None and len(exclude):
        seen = {g.tobytes() for g in np.asarray(exclude, dtype=genes.dtype)}
        genes = genes[[g.tobytes() not in seen for g in genes]]
    return genes[:n]


def _refine(
    client: Any,
    sp: SearchSpace,
    name: str,
    info: Any,
    target: float,
    budget: int,
    round_size: int,
    seed: int,
    refs: np.ndarray,
    ref_ms: np.ndarray,
    measure: Callable[[np.ndarray, str], InterleavedMeasurement],
    say: Callable[[str], None],
    history: list[dict[str, Any]],
    all_genes: list[np.ndarray],
    all_ms: list[np.ndarray],
    all_cv: list[np.ndarray],
    retest_rho: float,
) -> Any:
    """Adaptive rounds until the expected Spearman reaches ``target`` or ``budget`` samples."""
    order = np.argsort(ref_ms)
    anchors = np.unique(order[np.linspace(0, len(order) - 1, NUM_ANCHORS).round().astype(int)])
    r = 1
    while not info.expected_spearman >= target and info.num_samples < budget:  # nan: go on
        r += 1
        k = min(round_size, budget - int(info.num_samples))
        new = sp.validate(client.suggest_references(sp.name, k, seed=seed + r, device=name))
        if len(new) == 0:
            say("the oracle has no more architectures to suggest")
            break
        m = measure(np.concatenate([new, refs[anchors]]), f"round {r}")
        lat = m.latency_ms
        scale = float(np.median(lat[len(new):] / ref_ms[anchors]))
        new_ms = lat[: len(new)] / scale
        info = client.add_measurements(name, (new, new_ms), sp.name)
        all_genes.append(new)
        all_ms.append(new_ms)
        all_cv.append(m.cv[: len(new)])
        history.append({
            "round": r, "added": len(new), "samples": int(info.num_samples),
            "expected_spearman": float(info.expected_spearman), "anchor_scale": scale,
            "retest_spearman": retest_rho,
        })
        say(
            f"round {r}: +{len(new)} archs -> {info.num_samples} samples, expected Spearman "
            f"{info.expected_spearman:.3f} (target {target:.3f}), anchor scale {scale:.3f}, "
            f"retest Spearman {_fmt(retest_rho)}"
        )
    if info.expected_spearman >= target:
        say(f"target {target:.3f} reached with {info.num_samples} samples")
    else:
        say(
            f"target {target:.3f} not reached: expected Spearman {info.expected_spearman:.3f} "
            f"with {info.num_samples} samples (budget {budget})"
        )
    return info


def _validate(
    client: Any,
    sp: SearchSpace,
    name: str,
    report: OnboardReport,
    harness: Harness,
    measure: Callable[[np.ndarray, str], InterleavedMeasurement],
    n: int,
    seed: int,
    session: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Measure ``n`` random architectures (with ``session``'s genes, the session check, in
    the same interleaved set) and score the oracle's ranking of them."""
    genes = sp.sample(n, np.random.default_rng(seed + 1))
    t0 = time.perf_counter()
    if session is None:
        m = measure(genes, "validation")
    else:
        both = measure(np.concatenate([genes, session[0]]), "validation + session check")
        m = both.select(slice(0, len(genes)))
        _session_check(report, session[1], both.latency_ms[len(genes):])
    report.timings_s["validate_measure_s"] = time.perf_counter() - t0
    measured = m.latency_ms
    t0 = time.perf_counter()
    result = client.rank(sp.name, genes, [name])
    report.timings_s["validate_rank_s"] = time.perf_counter() - t0
    predicted = np.asarray(result.latency_ms[name], dtype=np.float64)
    report.validation_archs = [sp.format(g) for g in genes]
    report.validation_latency_ms = measured
    report.validation_predicted_ms = predicted
    report.validation_spearman = _spearman(predicted, measured)
    report.flops_spearman = _spearman(sp.flops(genes), measured)
    report.validation_retest_spearman = m.retest_spearman
    if np.isfinite(m.retest_spearman):
        report.retest_spearman = m.retest_spearman
        report.ceiling = m.ceiling
        report.retest_archs = len(genes)


def _session_check(report: OnboardReport, first_ms: np.ndarray, later_ms: np.ndarray) -> None:
    report.session_archs = len(first_ms)
    report.session_latency_ms = np.asarray(later_ms, dtype=np.float64)
    report.session_retest_spearman = _spearman(first_ms, later_ms)
    report.session_ceiling = retest_ceiling(report.session_retest_spearman)
    report.session_scale = float(np.median(np.asarray(later_ms) / np.asarray(first_ms)))


def _session_warnings(report: OnboardReport, threshold: float) -> list[str]:
    out = []
    rho, scale = report.session_retest_spearman, report.session_scale
    if np.isfinite(rho) and rho < threshold:
        out.append(
            f"the device ranked the same {report.session_archs} architectures differently in "
            f"a later pass (Spearman {rho:.3f} between the passes, threshold {threshold:.2f}): "
            "its latencies change with time (a shared machine, throttling, other load), so "
            "no ranking can agree with a later measurement better than about "
            f"{report.session_ceiling:.3f}; measure on a quiet machine with fixed clocks"
        )
    if np.isfinite(scale) and abs(scale - 1.0) > SESSION_SCALE_TOLERANCE:
        out.append(
            f"latencies measured in a later pass were {scale:.2f}x the first pass's: absolute "
            "latencies (max_latency_ms budgets) of this device carry that uncertainty"
        )
    return out


def _registered_parts(report: OnboardReport) -> str:
    """`` (10 references + 20 retest archs + 10 adaptive)``: where the registered came from."""
    adaptive = sum(p["added"] for p in report.progress[1:])
    refs = len(report.reference_latency_ms) - report.registered_retest - adaptive
    parts = [f"{refs} references"]
    if report.registered_retest:
        parts.append(f"{report.registered_retest} retest archs")
    if len(report.progress) > 1:
        parts.append(f"{adaptive} adaptive")
    return f" ({' + '.join(parts)})" if len(parts) > 1 else ""


def format_report(report: OnboardReport) -> str:
    """Human-readable summary for the CLI."""
    ms = report.reference_latency_ms
    lines = [
        f"device      {report.space}/{report.name}",
        f"measured on {report.contract.get('hardware', '?')} ({report.device}), "
        f"{report.threads} thread(s), batch {report.batch_size}, "
        + (f"{report.backend}, " if report.runtime == "torch" else "")
        + f"{report.contract.get('runtime', '?')} {report.contract.get('runtime_version', '?')}",
        f"harness     {report.rounds} interleaved rounds x {report.runs} runs, "
        f"{report.statistic}, largest drift between rounds {100 * report.drift:.0f} %, "
        f"sets re-measured {report.remeasured}",
        f"registered  {len(ms)} archs{_registered_parts(report)}, latency "
        f"{ms.min():.3f} .. {ms.max():.3f} ms "
        f"(median {np.median(ms):.3f}), CV median {np.median(report.reference_cv):.3f} "
        f"max {report.reference_cv.max():.3f}",
        f"retest      Spearman {_fmt(report.retest_spearman)} on {report.retest_archs} random "
        f"archs -> ceiling {_fmt(report.ceiling)} for any predictor; the first references "
        f"alone {_fmt(report.reference_retest_spearman)}",
    ]
    if report.session_archs:
        lines.append(
            f"session     {report.session_archs} archs measured again in a later pass: "
            f"Spearman {_fmt(report.session_retest_spearman)} between the passes -> ceiling "
            f"{_fmt(report.session_ceiling)}, latency ratio {report.session_scale:.3f}"
            + (f"; added to the device ({report.num_samples} measurements)"
               if report.session_added else "")
        )
    head = f"head        {report.head_kind} fit on {report.num_samples} samples"
    if report.session_added:
        head = (f"head        {report.head_kind}, refit on both passes: {report.num_samples} "
                f"measurements of {len(ms)} archs (one sample per arch: their median)")
    lines += [
        head,
        f"expected    Spearman {report.expected_spearman:.3f} (leave-one-out), "
        f"monotonicity {report.monotonicity:.3f}",
    ]
    if report.target_spearman is not None:
        steps = ", ".join(
            f"{p['samples']}:{p['expected_spearman']:.3f}" for p in report.progress
        )
        verdict = "reached" if report.target_reached else "NOT reached"
        lines.append(
            f"adaptive    target {report.target_spearman:.3f} {verdict} in "
            f"{len(report.progress)} round(s) (samples:expected {steps})"
        )
    if report.validate and report.validation_spearman is not None:
        lines.append(
            f"validation  {report.validate} random archs: oracle Spearman "
            f"{report.validation_spearman:.3f} vs FLOPs baseline {report.flops_spearman:.3f} "
            f"(ceiling {_fmt(report.ceiling)})"
            + ("; scored on the first pass's head, before the later pass was added"
               if report.session_added else "")
        )
    if report.onnx:
        o = report.onnx
        lines.append(
            f"onnx        {o['onnx_exported']} exported ({o['onnx_export_s']:.1f} s, before the "
            f"timed runs), {o['onnx_cached']} from the cache {o['onnx_cache']}"
        )
    for w in report.warnings:
        lines.append(f"WARNING     {w}")
    t = report.timings_s
    parts = [f"{k.removesuffix('_s')} {v:.1f}s" for k, v in t.items()]
    lines.append("timings     " + ", ".join(parts))
    return "\n".join(lines)
