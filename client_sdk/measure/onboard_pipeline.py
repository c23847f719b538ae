"""Onboarding as a pipeline of named steps (``Onboarding.STEPS``), run in order:

1. **suggest**: the oracle's reference architectures for the space;
2. **build**: the set to measure (the references and the random retest architectures, one
   interleaved set) and the contract it is measured under;
3. **measure**: time the set here (the harness builds every network, then interleaved
   rounds), once more when its test-retest Spearman is low;
4. **register**: register the device from the references (and the retest archs);
5. **adapt**: with a target Spearman, measure the architectures the oracle is least sure
   about in rounds until the target or the budget is reached (a no-op without a target);
6. **validate**: measure fresh random architectures (with the session check's later pass
   when there is one) and score the oracle's ranking of them (a no-op without ``validate``);
7. **session check**: the first set measured again in a later pass, compared with the
   first and added to the device (a no-op with ``session_check=False``);
8. **report**: the ``OnboardReport``.

``onboard`` runs them all; a test (or a caller who wants to look in between) calls
``Onboarding.step()`` one step at a time and reads ``Onboarding.state``. Every step is
logged (``logging``, debug level) with its duration; the user-facing lines go to ``log``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from client_sdk.measure.contract import build_contract
from client_sdk.measure.harness import Harness, InterleavedMeasurement, retest_ceiling
from client_sdk.measure.onboard_report import OnboardReport, fmt, judge
from client_sdk.measure.onboard_state import (
    OnboardSettings,
    OnboardState,
    SessionCheck,
    Validation,
    spearman,
)
from client_sdk.spaces import SearchSpace, get_space

logger = logging.getLogger(__name__)

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


class Onboarding:
    """One onboarding of ``settings.name`` on this machine, a step at a time.

    The client is duck-typed (``suggest_references``, ``register_device``,
    ``add_measurements``, ``rank``); ``measure_fn`` times a set of architectures (tests pass
    a fake); ``log`` receives the progress lines (``None`` for silence)."""

    STEPS: tuple[str, ...] = (
        "suggest",
        "build",
        "measure",
        "register",
        "adapt",
        "validate",
        "session check",
        "report",
    )

    def __init__(
        self,
        client: Any,
        settings: OnboardSettings,
        *,
        measure_fn: MeasureFn = measure_architectures,
        log: Callable[[str], None] | None = print,
    ) -> None:
        s = settings
        if s.runtime == "onnxruntime":  # a missing onnx/onnxruntime is said before any work
            from client_sdk.measure import onnx_runtime  # noqa: F401
        sp = get_space(s.space)
        threads = s.threads if s.threads is not None else torch.get_num_threads()
        self.client = client
        self.settings = settings
        self.measure_fn = measure_fn
        self.say: Callable[[str], None] = log or (lambda _msg: None)
        self.state = OnboardState(
            sp=sp,
            harness=Harness(s.harness_config()),
            threads=threads,
            t_start=time.perf_counter(),
        )
        self._steps: dict[str, Callable[[], None]] = {
            "suggest": self._suggest,
            "build": self._build,
            "measure": self._measure,
            "register": self._register,
            "adapt": self._adapt,
            "validate": self._validate,
            "session check": self._session_check,
            "report": self._report,
        }

    @property
    def next_step(self) -> str | None:
        """The step ``step()`` runs next (None once the report is made)."""
        done = len(self.state.done)
        return self.STEPS[done] if done < len(self.STEPS) else None

    def step(self) -> str:
        """Run the next step; its name."""
        name = self.next_step
        if name is None:
            raise RuntimeError("onboarding is complete: every step has run")
        t0 = time.perf_counter()
        self._steps[name]()
        self.state.done.append(name)
        logger.debug(
            "onboard %s/%s: step %d/%d %s done in %.2f s",
            self.settings.space,
            self.settings.name,
            len(self.state.done),
            len(self.STEPS),
            name,
            time.perf_counter() - t0,
        )
        return name

    def run(self) -> OnboardReport:
        """Every remaining step, in order; the report."""
        while self.next_step is not None:
            self.step()
        assert self.state.report is not None
        return self.state.report

    # --- measuring (every step that times architectures goes through here)

    def measure_set(self, genes: np.ndarray, desc: str) -> InterleavedMeasurement:
        """Measure; once more if the retest is low; note drift and warn."""
        s, st = self.settings, self.state
        m = self.measure_fn(st.sp, genes, st.harness, s.progress, desc)
        rho = m.retest_spearman
        threshold = s.retest_threshold
        if s.remeasure_low_retest and np.isfinite(rho) and rho < threshold:
            self.say(f"{desc}: retest Spearman {rho:.3f} < {threshold:.2f}, measuring again")
            m = m.merge(self.measure_fn(st.sp, genes, st.harness, s.progress, f"{desc} (again)"))
            st.remeasured += 1
            rho = m.retest_spearman
            if np.isfinite(rho) and rho < threshold:
                self._warn(
                    f"{desc}: test-retest Spearman {rho:.3f} after re-measuring (threshold "
                    f"{threshold:.2f}): this device is too noisy for a ranking to "
                    "agree better than that with its measurements; use a quieter machine, "
                    "fixed clocks, or more rounds"
                )
        if m.drifted:
            self._warn(
                f"{desc}: the device drifted {100 * m.drift:.0f} % between rounds "
                "(normalised per round)"
            )
        st.drift = max(st.drift, m.drift)
        return m

    def _warn(self, message: str) -> None:
        self.state.warnings.append(message)
        self.say("warning: " + message)

    # --- the steps

    def _suggest(self) -> None:
        s, st = self.settings, self.state
        t0 = time.perf_counter()
        st.refs = st.sp.validate(self.client.suggest_references(s.space, s.samples, seed=s.seed))
        st.timings["suggest_s"] = time.perf_counter() - t0

    def _build(self) -> None:
        s, st = self.settings, self.state
        assert st.refs is not None
        st.retest_genes = random_archs(st.sp, s.n_retest, s.seed + 2, exclude=st.refs)
        st.measured = np.concatenate([st.refs, st.retest_genes])  # one interleaved set
        st.contract = build_contract(
            st.sp,
            threads=st.threads,
            batch_size=s.batch_size,
            device=s.device,
            config=st.harness.config,
        )

    def _measure(self) -> None:
        s, st = self.settings, self.state
        assert st.refs is not None and st.retest_genes is not None and st.measured is not None
        cfg = st.harness.config
        self.say(
            f"measuring {len(st.refs)} reference architectures of '{s.space}' on {s.device} "
            f"({s.runtime}, {st.threads} thread(s), batch {s.batch_size}, {cfg.rounds} rounds "
            f"x {cfg.runs} runs, {cfg.statistic})"
            + (
                f" with {len(st.retest_genes)} random archs for the retest ceiling"
                if s.n_retest
                else ""
            )
        )
        t0 = time.perf_counter()
        st.first = self.measure_set(st.measured, "references")
        st.timings["measure_s"] = time.perf_counter() - t0
        if s.n_retest:
            st.retest_rho = st.first.select(slice(len(st.refs), None)).retest_spearman

    def _register(self) -> None:
        s, st = self.settings, self.state
        assert st.refs is not None and st.retest_genes is not None and st.first is not None
        t0 = time.perf_counter()
        st.n_first = len(st.refs) + (len(st.retest_genes) if s.register_retest else 0)
        first_ms = st.measured_ms[: st.n_first]
        info = self.client.register_device(
            s.name, s.space, (st.first_genes, first_ms), contract=st.contract
        )
        st.timings["register_s"] = time.perf_counter() - t0
        extra = st.n_first - len(st.refs)  # the registered retest archs
        self.say(
            f"registered {s.space}/{s.name} from {st.n_first} archs ({len(st.refs)} references"
            + (f" + {extra} retest archs" if extra else "")
            + f"): head {info.head_kind}, expected Spearman "
            f"{info.expected_spearman:.3f}, monotonicity {info.monotonicity:.3f}"
            + (f", retest Spearman {st.retest_rho:.3f}" if s.n_retest else "")
        )
        st.info = info
        st.history.append(self._round(1, st.n_first, 1.0))
        st.all_genes.append(st.first_genes)
        st.all_ms.append(first_ms)
        st.all_cv.append(st.first.cv[: st.n_first])

    def _round(self, r: int, added: int, scale: float) -> dict[str, Any]:
        """The history entry of round ``r`` (the device as it is now)."""
        info = self.state.info
        return {
            "round": r,
            "added": added,
            "samples": int(info.num_samples),
            "expected_spearman": float(info.expected_spearman),
            "anchor_scale": scale,
            "retest_spearman": self.state.retest_rho,
        }

    def _adapt(self) -> None:
        """Adaptive rounds until the expected Spearman reaches the target or the budget."""
        s, st = self.settings, self.state
        target = s.target_spearman
        if target is None:
            return
        assert st.refs is not None
        t0 = time.perf_counter()
        budget, sp, ref_ms = s.budget, st.sp, st.ref_ms
        order = np.argsort(ref_ms)
        picks = order[np.linspace(0, len(order) - 1, NUM_ANCHORS).round().astype(int)]
        anchors = np.unique(picks)
        r = 1
        while not st.info.expected_spearman >= target and st.info.num_samples < budget:  # nan
            r += 1
            k = min(s.round_size, budget - int(st.info.num_samples))
            new = sp.validate(
                self.client.suggest_references(sp.name, k, seed=s.seed + r, device=s.name)
            )
            if len(new) == 0:
                self.say("the oracle has no more architectures to suggest")
                break
            m = self.measure_set(np.concatenate([new, st.refs[anchors]]), f"round {r}")
            lat = m.latency_ms
            scale = float(np.median(lat[len(new) :] / ref_ms[anchors]))
            new_ms = lat[: len(new)] / scale
            st.info = self.client.add_measurements(s.name, (new, new_ms), sp.name)
            st.all_genes.append(new)
            st.all_ms.append(new_ms)
            st.all_cv.append(m.cv[: len(new)])
            st.history.append(self._round(r, len(new), scale))
            self.say(
                f"round {r}: +{len(new)} archs -> {st.info.num_samples} samples, expected "
                f"Spearman {st.info.expected_spearman:.3f} (target {target:.3f}), anchor scale "
                f"{scale:.3f}, retest Spearman {fmt(st.retest_rho)}"
            )
        info = st.info
        if info.expected_spearman >= target:
            self.say(f"target {target:.3f} reached with {info.num_samples} samples")
        else:
            self.say(
                f"target {target:.3f} not reached: expected Spearman "
                f"{info.expected_spearman:.3f} with {info.num_samples} samples (budget {budget})"
            )
        st.timings["adaptive_s"] = time.perf_counter() - t0

    def _validate(self) -> None:
        """Measure ``validate`` random architectures (with the session check's later pass of
        the first set, in the same interleaved set) and score the oracle's ranking of them."""
        s, st = self.settings, self.state
        n = s.validate
        if not n:
            return
        assert st.measured is not None
        sp = st.sp
        genes = sp.sample(n, np.random.default_rng(s.seed + 1))
        t0 = time.perf_counter()
        if not s.session_check:
            m = self.measure_set(genes, "validation")
        else:
            both = self.measure_set(
                np.concatenate([genes, st.measured]), "validation + session check"
            )
            m = both.select(slice(0, len(genes)))
            st.later_ms = both.latency_ms[len(genes) :]
        st.timings["validate_measure_s"] = time.perf_counter() - t0
        measured = m.latency_ms
        t0 = time.perf_counter()
        result = self.client.rank(sp.name, genes, [s.name])
        st.timings["validate_rank_s"] = time.perf_counter() - t0
        predicted = np.asarray(result.latency_ms[s.name], dtype=np.float64)
        v = st.validation = Validation(
            genes=genes,
            latency_ms=measured,
            predicted_ms=predicted,
            spearman=spearman(predicted, measured),
            flops_spearman=spearman(sp.flops(genes), measured),
            retest_spearman=m.retest_spearman,
        )
        self.say(
            f"validation on {n} random architectures: oracle Spearman "
            f"{v.spearman:.3f}, FLOPs baseline {v.flops_spearman:.3f}, "
            f"retest {fmt(v.retest_spearman)}, ceiling {fmt(retest_ceiling(st.retest[0]))}"
        )

    def _session_check(self) -> None:
        """The first set again in a later pass (the validation's, else one of its own):
        compared with the first pass, warned about, then added to the device (after any
        validation was scored): the registry fits one sample per architecture (the median
        of its measurements), and the spread of the repeats widens the device's stated
        uncertainty."""
        s, st = self.settings, self.state
        if not s.session_check:
            return
        assert st.measured is not None
        later = st.later_ms
        if later is None:
            t0 = time.perf_counter()
            later = self.measure_set(st.measured, "session check").latency_ms
            st.timings["session_measure_s"] = time.perf_counter() - t0
        check = SessionCheck(st.measured_ms, np.asarray(later, dtype=np.float64))
        self.say(
            f"session check on {check.archs} archs measured again in a later pass: "
            f"Spearman between the passes {fmt(check.spearman)} (ceiling "
            f"{fmt(check.ceiling)}), latency ratio {check.scale:.3f}"
        )
        for w in session_warnings(check, s.retest_threshold):
            self._warn(w)
        again_ms = check.latency_ms[: st.n_first]
        check.info = self.client.add_measurements(s.name, (st.first_genes, again_ms), st.sp.name)
        check.added = len(again_ms)
        st.session = check
        self.say(
            f"added the later pass to {s.space}/{s.name}: {int(check.info.num_samples)} "
            f"measurements, expected Spearman {check.info.expected_spearman:.3f}"
        )

    def _report(self) -> None:
        s, st = self.settings, self.state
        assert st.refs is not None and st.retest_genes is not None and st.first is not None
        info, cfg = st.info, st.harness.config
        latest = st.session.info if st.session is not None else info
        retest_rho, retest_archs = st.retest
        report = OnboardReport(
            name=s.name,
            space=s.space,
            device=s.device,
            threads=st.threads,
            batch_size=s.batch_size,
            warmup=s.warmup,
            repeats=cfg.rounds * cfg.runs,
            backend=s.backend,
            contract=st.contract,
            reference_archs=[st.sp.format(g) for g in np.concatenate(st.all_genes)],
            reference_latency_ms=np.concatenate(st.all_ms),
            reference_cv=np.concatenate(st.all_cv),
            remeasured=st.remeasured,
            head_kind=str(latest.head_kind),
            num_samples=int(latest.num_samples),
            expected_spearman=float(latest.expected_spearman),
            monotonicity=float(info.monotonicity),
            statistic=cfg.statistic,
            rounds=cfg.rounds,
            runs=cfg.runs,
            retest_spearman=retest_rho,
            ceiling=retest_ceiling(retest_rho),
            retest_archs=retest_archs,
            registered_retest=st.n_first - len(st.refs),
            reference_retest_spearman=st.first.select(slice(0, len(st.refs))).retest_spearman,
            drift=float(st.drift),
            progress=st.history,
            target_spearman=s.target_spearman,
            target_reached=(
                None
                if s.target_spearman is None
                else bool(info.expected_spearman >= s.target_spearman)
            ),
            warnings=st.warnings,
            validate=s.validate,
            timings_s=st.timings,
            runtime=s.runtime,
        )
        report.quality = latest.quality
        report.advised_samples = int(latest.advised_samples)
        report.quality_reasons = list(latest.warnings)
        if (v := st.validation) is not None:
            if v.spearman < v.flops_spearman - VALIDATION_FLOPS_MARGIN:
                self._warn(
                    f"on the {len(v.genes)} validation archs the served ranking "
                    f"({v.spearman:.3f}) is worse than ranking by FLOPs "
                    f"({v.flops_spearman:.3f})"
                    + ("" if report.quality == "low" else
                       " although the server did not flag the device LOW")
                    + ": rank this device by FLOPs, or measure more architectures"
                )
            report.validation_archs = [st.sp.format(g) for g in v.genes]
            report.validation_latency_ms = v.latency_ms
            report.validation_predicted_ms = v.predicted_ms
            report.validation_spearman = v.spearman
            report.flops_spearman = v.flops_spearman
            report.validation_retest_spearman = v.retest_spearman
        if (c := st.session) is not None:
            report.session_archs = c.archs
            report.session_latency_ms = c.latency_ms
            report.session_retest_spearman = c.spearman
            report.session_ceiling = c.ceiling
            report.session_scale = c.scale
            report.session_added = c.added
        report.verdict, report.verdict_reason = judge(report)
        if st.harness.ort_builder is not None:  # the ONNX Runtime builder's export counters
            report.onnx = st.harness.ort_builder.stats()
        st.timings["total_s"] = time.perf_counter() - st.t_start
        st.report = report


#: validation: a served ranking worse than FLOPs by more than this is a warning of its own
VALIDATION_FLOPS_MARGIN = 0.02


def random_archs(
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


def session_warnings(check: SessionCheck, threshold: float) -> list[str]:
    out = []
    rho, scale = check.spearman, check.scale
    if np.isfinite(rho) and rho < threshold:
        out.append(
            f"the device ranked the same {check.archs} architectures differently in "
            f"a later pass (Spearman {rho:.3f} between the passes, threshold {threshold:.2f}): "
            "its latencies change with time (a shared machine, throttling, other load), so "
            "no ranking can agree with a later measurement better than about "
            f"{check.ceiling:.3f}; measure on a quiet machine with fixed clocks"
        )
    if np.isfinite(scale) and abs(scale - 1.0) > SESSION_SCALE_TOLERANCE:
        out.append(
            f"latencies measured in a later pass were {scale:.2f}x the first pass's: absolute "
            "latencies (max_latency_ms budgets) of this device carry that uncertainty"
        )
    return out
