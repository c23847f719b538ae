"""``OnboardReport`` (everything ``onboard`` measured and what the oracle answered) and its
human-readable summary ``format_report`` (what ``oracle device onboard`` prints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from client_sdk.measure.measurement import retest_ceiling


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
    #: the server's verdict on the device (``GetDevice``): "good" | "low", the measurements
    #: it advises in total, and its reasons (e.g. not clearly better than ranking by FLOPs)
    quality: str = "good"
    advised_samples: int = 0
    quality_reasons: list[str] = field(default_factory=list)
    #: what limits the figures (``judge``): "ok", "measurement problem", "below ceiling"
    #: (the model's shortfall) or "not validated"; and why, in a sentence
    verdict: str = ""
    verdict_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (arrays as lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
        return out


#: a retest between two passes this much below the retest within one pass is a
#: measurement problem; a validation this much below the ceiling is the model's shortfall
JUDGE_MARGIN = 0.05


def judge(report: OnboardReport) -> tuple[str, str]:
    """(verdict, reason): is a weak figure the measurement's or the model's?

    The session's own noise is its retest within one pass (``retest_spearman``: split halves
    of the interleaved rounds, stepped up). When the same architectures measured again in a
    later pass agree with the first pass more than ``JUDGE_MARGIN`` worse than that, the
    device changed between the passes. The ceiling counts both: ``sqrt`` of the lower of
    the two retests, what a perfect predictor can reach against these measurements. A
    validation more than ``JUDGE_MARGIN`` below it is the model's shortfall (**below
    ceiling**, even allowing for the change); else a changed device is a **measurement
    problem** (the validation measures the change as much as the model); else **ok**;
    **not validated** without a validation set."""
    within, between = report.retest_spearman, report.session_retest_spearman
    v = report.validation_spearman
    changed = bool(np.isfinite(within) and np.isfinite(between)
                   and between < within - JUDGE_MARGIN)
    change = (
        f"the same {report.session_archs} architectures measured in a later pass rank "
        f"{between:.3f} against the first pass, but {within:.3f} within one pass: the "
        "device changed between the passes (other load, throttling, clocks)"
    )
    lows = [r for r in (within, between) if np.isfinite(r)]
    c = retest_ceiling(min(lows)) if lows else float("nan")
    if v is not None and np.isfinite(c) and v < c - JUDGE_MARGIN:
        return "below ceiling", (
            f"the served ranking ({v:.3f}) is {c - v:.3f} below what this session's noise "
            f"allows ({c:.3f}"
            + (", counting the change between the passes" if changed else "")
            + "): the model's shortfall (measure more architectures)"
            + (f"; besides, {change}" if changed else "")
        )
    if changed:
        return "measurement problem", (
            change
            + ("" if v is None else
               f", so the validation's {v:.3f} measures that change as much as the model")
            + "; re-measure on a quiet machine with fixed clocks"
        )
    if v is None:
        return "not validated", "no fresh architectures were measured (--validate N)"
    return "ok", (
        f"the served ranking ({v:.3f}) is within {JUDGE_MARGIN} of the ceiling ({fmt(c)})"
        if np.isfinite(c) else "no retest to compare with (n_retest 0)"
    )


def fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


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
        f"retest      Spearman {fmt(report.retest_spearman)} on {report.retest_archs} random "
        f"archs -> ceiling {fmt(report.ceiling)} for any predictor; the first references "
        f"alone {fmt(report.reference_retest_spearman)}",
    ]
    if report.session_archs:
        lines.append(
            f"session     {report.session_archs} archs measured again in a later pass: "
            f"Spearman {fmt(report.session_retest_spearman)} between the passes -> ceiling "
            f"{fmt(report.session_ceiling)}, latency ratio {report.session_scale:.3f}"
            + (
                f"; added to the device ({report.num_samples} measurements)"
                if report.session_added
                else ""
            )
        )
    head = f"head        {report.head_kind} fit on {report.num_samples} samples"
    if report.session_added:
        head = (
            f"head        {report.head_kind}, refit on both passes: {report.num_samples} "
            f"measurements of {len(ms)} archs (one sample per arch: their median)"
        )
    lines += [
        head,
        f"expected    Spearman {report.expected_spearman:.3f} (leave-one-out), "
        f"monotonicity {report.monotonicity:.3f}",
    ]
    if report.quality != "good" or report.quality_reasons:
        lines.append(
            f"quality     {report.quality.upper()}"
            + (f", {report.advised_samples} measurements advised"
               if report.advised_samples > report.num_samples else "")
            + "".join(f"; {r}" for r in report.quality_reasons)
        )
    if report.target_spearman is not None:
        steps = ", ".join(f"{p['samples']}:{p['expected_spearman']:.3f}" for p in report.progress)
        verdict = "reached" if report.target_reached else "NOT reached"
        lines.append(
            f"adaptive    target {report.target_spearman:.3f} {verdict} in "
            f"{len(report.progress)} round(s) (samples:expected {steps})"
        )
    if report.validate and report.validation_spearman is not None:
        lines.append(
            f"validation  {report.validate} random archs: oracle Spearman "
            f"{report.validation_spearman:.3f} vs FLOPs baseline {report.flops_spearman:.3f} "
            f"(ceiling {fmt(report.ceiling)})"
            + (
                "; scored on the first pass's head, before the later pass was added"
                if report.session_added
                else ""
            )
        )
    if report.verdict:
        lines.append(f"verdict     {report.verdict.upper()}: {report.verdict_reason}")
    if report.onnx:
        o = report.onnx
        lines.append(
            f"onnx        {o['onnx_exported']} exported ({o['onnx_export_s']:.1f} s, before the "
            f"timed runs), {o['onnx_cached']} from the cache {o['onnx_cache']}"
            + (
                f"; {o['onnx_evicted']} older file(s) evicted ({o['onnx_evicted_mb']:.1f} MB, "
                f"cap {o['onnx_cache_max_mb']:g} MB)"
                if o.get("onnx_evicted")
                else ""
            )
        )
    for w in report.warnings:
        lines.append(f"WARNING     {w}")
    t = report.timings_s
    parts = [f"{k.removesuffix('_s')} {v:.1f}s" for k, v in t.items()]
    lines.append("timings     " + ", ".join(parts))
    return "\n".join(lines)
