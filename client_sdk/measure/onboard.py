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

``onboard`` runs the named steps of ``client_sdk.measure.onboard_pipeline.Onboarding``
(suggest, build, measure, register, adapt, validate, session check, report) in order; the
pieces live in ``onboard_state`` (settings, state), ``onboard_report`` (``OnboardReport``,
``format_report``) and ``contract`` (``build_contract``), and are importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from client_sdk.measure.contract import build_contract, hardware_description
from client_sdk.measure.harness import Backend, Runtime, Statistic
from client_sdk.measure.onboard_pipeline import (
    NUM_ANCHORS,
    SESSION_SCALE_TOLERANCE,
    MeasureFn,
    Onboarding,
    measure_architectures,
)
from client_sdk.measure.onboard_report import OnboardReport, format_report
from client_sdk.measure.onboard_state import OnboardSettings, OnboardState

__all__ = [
    "NUM_ANCHORS",
    "SESSION_SCALE_TOLERANCE",
    "MeasureFn",
    "OnboardReport",
    "OnboardSettings",
    "OnboardState",
    "Onboarding",
    "build_contract",
    "format_report",
    "hardware_description",
    "measure_architectures",
    "onboard",
]


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
    pin_cpus: tuple[int, ...] | None = None,
    flush_denormal: bool = False,
    measure_fn: MeasureFn = measure_architectures,
    log: Callable[[str], None] | None = print,
) -> OnboardReport:
    """Measure ``samples`` oracle-suggested references here, register ``name``, refine, validate.

    Each measured set is timed in ``rounds`` interleaved rounds of ``ceil(repeats / rounds)``
    runs per architecture; ``statistic`` summarises the runs (see
    ``benchmarks/results/studies/harness_study.json`` for the evidence behind the default).

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

    ``pin_cpus=(0,)``: the process's threads run on these CPUs only while timing (Linux);
    ``flush_denormal``: float32 denormals are flushed to zero while timing (torch
    ``set_flush_denormal``, ONNX Runtime ``session.set_denormal_as_zero``). Both are off by
    default, restored afterwards and recorded in the contract's notes
    (``client_sdk.measure.timing_env``).

    ``validate=N`` measures N random architectures (``space.sample(N, seed + 1)``) and
    reports the Spearman of the oracle's ranking and of analytic FLOPs against them, beside
    the ceiling. ``log`` receives progress lines (``None`` for silence).
    """

    settings = OnboardSettings(
        name=name,
        space=space,
        samples=samples,
        threads=threads,
        batch_size=batch_size,
        device=device,
        validate=validate,
        repeats=repeats,
        progress=progress,
        seed=seed,
        warmup=warmup,
        backend=backend,
        cv_threshold=cv_threshold,
        rounds=rounds,
        statistic=statistic,
        target_spearman=target_spearman,
        max_samples=max_samples,
        round_size=round_size,
        retest=retest,
        retest_threshold=retest_threshold,
        remeasure_low_retest=remeasure_low_retest,
        session_check=session_check,
        register_retest=register_retest,
        runtime=runtime,
        onnx_cache=onnx_cache,
        graph_optimization=graph_optimization,
        pin_cpus=pin_cpus,
        flush_denormal=flush_denormal,
    )
    return Onboarding(client, settings, measure_fn=measure_fn, log=log).run()
