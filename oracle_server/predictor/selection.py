"""Per-device head selection by leave-one-out on the device's own samples.

``select_head`` fits every candidate head (``heads.candidate_names()``: the registered kinds
flagged ``candidate``, or the space's own list)
and averages them in log space with **pseudo-Bayesian model averaging** weights from their
exact leave-one-out errors (Yao et al., 2018, "Using stacking to average Bayesian predictive
distributions"): with Gaussian log-errors, a candidate's LOO log predictive density is
``-(n/2) log MSE_loo`` up to a constant, so ``w_k ~ exp(-(n / 2T) log MSE_k)``, tempered by
``ENSEMBLE_TEMPERATURE`` (candidates fit to the same few samples are not independent
evidence). The ``ENSEMBLE_MAX_MEMBERS`` heaviest members of weight ``>= ENSEMBLE_MIN_WEIGHT``
are kept (bounded Rank cost) and renormalised. With 10 samples the LOO ranking of heads is
noisy: soft weights beat the former "top 2 by LOO Spearman" rule on every validation space
(HELP validation devices and leave-family-out on non-test devices, two independent sets of
draws; ``benchmarks/results/studies/selection_pbma.json``). Reports:

* ``expected_spearman``: the ensemble's leave-one-out Spearman (the weighted mean of the
  members' exact LOO predictions; the weights themselves are fit on all samples);
* ``monotonicity``: Spearman of the best single basis output vs the samples;
* an uncertainty model: RMS of the ensemble's LOO log-residuals times ``SIGMA_INFLATION``,
  widened per architecture by its leverage along the best basis output.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from client_sdk import stats
from oracle_server.predictor.head_fit import HeadFit
from oracle_server.predictor.heads import (
    HEADS,
    Candidate,
    FitInputs,
    best_basis,
    candidate_names,
    flops_baseline_kind,
    head_kind,
    log_basis,
    predict_log,
    spearman,
    spearman_columns,
)
from oracle_server.predictor.heads.ensemble import Ensemble
from oracle_server.predictor.priors import DescriptorPrior

#: a device whose leave-one-out Spearman is below this is flagged low-confidence (0.8 until
#: replayed onboardings of this machine's CPU showed leave-one-out estimates of 0.837-0.842
#: on rows whose served ranking lost to FLOPs on 100 fresh archs: docs/transfer.md)
QUALITY_SPEARMAN = 0.85
#: ... and so is one whose estimate does not beat the FLOPs ranking by this margin
QUALITY_MARGIN_OVER_FLOPS = 0.02
#: serve the FLOPs head alone when its LOO Spearman beats the ensemble's by more than this,
#: or beats it at all and the fitted head wins fewer than ``FLOPS_FALLBACK_SHARE`` of the
#: bootstrap resamples (the device's own samples say FLOPs is the better ranking)
FLOPS_FALLBACK_MARGIN = 0.05
FLOPS_FALLBACK_SHARE = 0.5
#: paired bootstrap of the leave-one-out predictions against the FLOPs head's: the share of
#: resamples of the device's own samples in which the served head ranks them better
#: (``HeadFit.beats_flops``); below ``BEATS_FLOPS_CONFIDENCE`` the device is flagged LOW
BOOTSTRAP_DRAWS = 500
BOOTSTRAP_CELLS = 50_000  # at most this many resampled values (fewer draws for large n)
BEATS_FLOPS_CONFIDENCE = 0.8
#: temperature of the pseudo-BMA weights (validation, two sets of draws: T=2 beats the
#: untempered T=1 by 0.001-0.0014 mean Spearman; T=4 is within 0.0006 of T=2)
ENSEMBLE_TEMPERATURE = 2.0
#: at most this many members (the heaviest), each of weight >= ENSEMBLE_MIN_WEIGHT: every
#: member is evaluated per Rank, so this bounds a registered device's cost (validation: 4
#: members against all of them: equal on one set of draws, -0.002 on the other)
ENSEMBLE_MAX_MEMBERS = 4
ENSEMBLE_MIN_WEIGHT = 0.05
#: ``sigma["anchor"]`` of a head that reads no basis column: its interval's leverage comes
#: from its own prediction instead of the best basis column, so Rank runs no proxy for it
SELF_ANCHOR_INDEX = -1
#: multiplies the LOO RMS so that the stated 80 % interval covers ~80 % (validation devices
#: and leave-family-out non-test devices: 1.0 -> 0.78 coverage, 1.2 -> 0.84)
SIGMA_INFLATION = 1.1


def select_head(
    basis: np.ndarray,
    features: np.ndarray,
    latency_ms: np.ndarray,
    linear_weights: np.ndarray,
    cost_matrix: np.ndarray,
    kinds: Sequence[str] | None = None,
    descriptors: np.ndarray | None = None,
    prior: DescriptorPrior | None = None,
    repeat_log_var: float = 0.0,
    repeat_spearman: tuple[float, int] = (float("nan"), 0),
) -> HeadFit:
    """Fit the candidate heads ``kinds`` (default: every registered candidate) on ``n``
    validated samples and average them (pseudo-BMA).

    ``repeat_log_var``: variance of a repeated measurement's log latency on this device
    (``model.repeat_log_variance``), added to the stated uncertainty: the interval then
    covers the device's own change between measurements, not only the model's error.
    ``repeat_spearman``: (Spearman between two measurements of the architectures measured
    twice, how many: ``model.repeat_spearman``); below ``REPEAT_SPEARMAN_LOW`` the device is
    flagged LOW as a measurement problem."""
    start = time.perf_counter()
    y = np.asarray(latency_ms, dtype=np.float64)
    z = np.log(y)
    log_b = log_basis(basis)
    n = len(y)
    mono = float(np.max(spearman_columns(log_b, z))) if n >= 3 else float("nan")
    anchor = best_basis(log_b, z)
    inp = FitInputs(basis, np.asarray(features, dtype=np.float64), y, linear_weights,
                    cost_matrix, descriptors, prior)
    kinds = candidate_names() if kinds is None else kinds
    usable = [k for k in kinds if head_kind(k).available(inp)] or [
        k for k, h in HEADS.items() if h.last_resort]
    cands = [head_kind(k).fit(inp) for k in usable]
    scores = {c.kind: _loo_scores(c, z) for c in cands}
    best = _ensemble(cands, z)
    rho, mse = _loo_scores(best, z)
    fell_back = False
    baseline = flops_baseline_kind()  # the FLOPs ranking as a head
    flops = next((c for c in cands if c.kind == baseline), None)
    beats = (beats_flops_share(best.loo_log, flops.loo_log, z)
             if flops is not None and best is not flops else float("nan"))
    if flops is not None and n >= 3 and np.isfinite(scores[flops.kind][0]) and (
        not np.isfinite(rho) or scores[flops.kind][0] > rho + FLOPS_FALLBACK_MARGIN
        or (beats < FLOPS_FALLBACK_SHARE and scores[flops.kind][0] > rho)
    ):  # the device's own samples say FLOPs ranks it better than the fitted heads
        best, fell_back = flops, True
        rho, mse = scores[flops.kind]
        beats = float("nan")
    fell_back = fell_back or best.kind == baseline  # (also when stacking kept FLOPs alone)
    if not head_kind(best.kind).columns(best.params):
        # a head that reads no basis column: leverage along its own prediction, so that
        # Rank never evaluates the proxy for it (anchor -1, see HeadFit.log_sigma)
        anchor = SELF_ANCHOR_INDEX
        u = predict_log(best.kind, best.params, basis, inp.features, descriptors)
    else:
        u = log_b[:, anchor]
    sigma = {
        "anchor": anchor,
        "n": n,
        "u_mean": float(u.mean()),
        "u_sxx": float(((u - u.mean()) ** 2).sum()),
        "s": float(np.sqrt(mse * SIGMA_INFLATION**2 + max(repeat_log_var, 0.0))),
    }
    if repeat_log_var > 0:
        sigma["repeat_s"] = float(np.sqrt(repeat_log_var))
    flops_rho = scores[baseline][0] if baseline in scores else float("nan")
    quality, advised = assess(rho if n >= 3 else float("nan"), flops_rho, n, beats)
    warnings = _warnings(best.loo_log, z, n, rho, flops_rho, beats)
    warnings[:0] = repeat_warnings(*repeat_spearman)
    if fell_back:
        warnings.insert(0, "serving the FLOPs ranking: on this device's own samples it beats "
                           "every fitted head (leave-one-out); measure more to do better")
    if warnings and quality == "good" and any(w.startswith("measurement") for w in warnings):
        quality, advised = "low", int(max(2 * n, 20))
    return HeadFit(
        kind=best.kind,
        num_samples=n,
        expected_spearman=rho if n >= 3 else float("nan"),
        monotonicity=mono,
        fit_seconds=time.perf_counter() - start,
        params=best.params,
        sigma=sigma,
        candidates={k: (None if np.isnan(v[0]) else round(v[0], 4)) for k, v in scores.items()},
        flops_spearman=flops_rho,
        quality=quality,
        advised_samples=advised,
        warnings=warnings,
        beats_flops=beats,
    )


def beats_flops_share(head_loo: np.ndarray, flops_loo: np.ndarray, z: np.ndarray,
                      draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> float:
    """Share of paired bootstrap resamples of the ``n`` samples in which the head's
    leave-one-out predictions rank them better (higher Spearman) than the FLOPs head's; a
    tie counts half. NaN below 5 samples. Seeded: the same samples give the same share.

    Leave-one-out Spearmans of two heads on the same 10-30 samples differ by less than
    their noise more often than not; this says how sure the device's own data is that the
    fitted head is the better ranking (replayed onboardings of this machine's CPU:
    ``docs/transfer.md``)."""
    z = np.asarray(z, dtype=np.float64)
    n = len(z)
    if n < 5:
        return float("nan")
    draws = max(20, min(draws, BOOTSTRAP_CELLS // n))  # bounded work for large devices
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    zs = z[idx].T  # (n, draws): one resample a column
    # client_sdk.stats': an undefined resample (a constant side) is nan, a tie below
    d = stats.spearman_columns(np.asarray(head_loo)[idx].T, zs) - stats.spearman_columns(
        np.asarray(flops_loo)[idx].T, zs)
    return float(np.mean(np.where(np.isfinite(d), (d > 0) + 0.5 * (d == 0), 0.5)))


#: a device whose repeated measurements (a later pass over the same architectures) agree
#: with the first below this Spearman is flagged LOW: a measurement problem, not the
#: model's (the onboarding's retest threshold; ``client_sdk.measure.onboard``)
REPEAT_SPEARMAN_LOW = 0.90


def repeat_warnings(rho: float, archs: int) -> list[str]:
    """The measurement-problem warning when the device's repeats disagree (else none). Its
    text starts with "measurement", which makes the device LOW (``select_head``)."""
    if not (np.isfinite(rho) and rho < REPEAT_SPEARMAN_LOW):
        return []
    return [f"measurements of the same {archs} architectures taken twice rank them "
            f"differently (Spearman {rho:.3f} between the repeats, below "
            f"{REPEAT_SPEARMAN_LOW}): the device changed between the measurements (other "
            "load, throttling, clocks), so no ranking of it can be trusted beyond that; this "
            "is a measurement problem, not the model's: re-measure on a quiet machine with "
            "fixed clocks"]


#: a sample whose leave-one-out prediction is off by more than this factor is an outlier
OUTLIER_FACTOR = 3.0


def _warnings(loo_log: np.ndarray, z: np.ndarray, n: int, rho: float,
              flops_rho: float, beats: float = float("nan")) -> list[str]:
    """Plain-language reasons for doubt, shown with the device (CLI, DeviceInfo)."""
    out = []
    if n < 5:
        out.append(f"only {n} distinct architectures measured: the leave-one-out estimate "
                   "is unreliable below 5")
    if np.unique(z).size <= 2 < n:
        out.append("the measurements take only 2 distinct values: the device's timer is too "
                   "coarse for these architectures (measure with more repeats or a finer timer)")
    off = np.flatnonzero(np.abs(loo_log - z) > np.log(OUTLIER_FACTOR))
    if n >= 5 and len(off):
        idx = ", ".join(str(int(i)) for i in off[:5])
        out.append(f"measurement(s) {idx} disagree with the others by more than "
                   f"{OUTLIER_FACTOR:g}x: re-measure them")
    if np.isfinite(rho) and np.isfinite(flops_rho) and rho < flops_rho + QUALITY_MARGIN_OVER_FLOPS:
        out.append(f"the estimate ({rho:.3f}) does not beat ranking by FLOPs ({flops_rho:.3f})")
    elif np.isfinite(beats) and beats < BEATS_FLOPS_CONFIDENCE:
        out.append(f"not clearly better than ranking by FLOPs: on resamples of this device's "
                   f"{n} samples the fitted head ranks them better in only {beats:.0%} "
                   f"(leave-one-out {rho:.3f} vs FLOPs {flops_rho:.3f}); measure more")
    if np.isfinite(rho) and rho < QUALITY_SPEARMAN:
        out.append(f"the leave-one-out estimate {rho:.3f} is below {QUALITY_SPEARMAN}")
    return out


def assess(expected: float, flops_rho: float, n: int,
           beats_flops: float = float("nan")) -> tuple[str, int]:
    """(``"good"`` | ``"low"``, advised total number of measurements).

    Low: fewer than 5 samples (leave-one-out says little), an expected Spearman below
    ``QUALITY_SPEARMAN``, or no clear gain over ranking by FLOPs (the FLOPs head's own
    leave-one-out Spearman on the same samples, or the head beating it in fewer than
    ``BEATS_FLOPS_CONFIDENCE`` of the bootstrap resamples: ``beats_flops_share``). Advice
    for a low estimate: double the samples, at least 20 in total (validation curves: the
    estimate's error shrinks roughly with 1/sqrt(n), see docs/transfer.md).
    """
    low = (
        n < 5
        or not np.isfinite(expected)
        or expected < QUALITY_SPEARMAN
        or (np.isfinite(flops_rho) and expected < flops_rho + QUALITY_MARGIN_OVER_FLOPS)
        or (np.isfinite(beats_flops) and beats_flops < BEATS_FLOPS_CONFIDENCE)
    )
    if not low:
        return "good", n
    return "low", int(max(2 * n, 20))


def pbma_weights(loo_mse: np.ndarray, n: int,
                 temperature: float | None = None) -> np.ndarray:
    """Pseudo-BMA weights of candidates with LOO mean squared log errors ``loo_mse`` on ``n``
    samples; non-finite errors get weight 0 (all non-finite: uniform)."""
    t = ENSEMBLE_TEMPERATURE if temperature is None else temperature
    e = np.asarray(loo_mse, dtype=np.float64)
    ok = np.isfinite(e)
    if not ok.any():
        return np.full(len(e), 1.0 / len(e))
    log_w = np.where(ok, -0.5 * n * np.log(np.maximum(e, 1e-300)) / t, -np.inf)
    w = np.exp(log_w - log_w[ok].max())
    return w / w.sum()


def pbma_members(loo_mse: np.ndarray, n: int, temperature: float | None = None,
                 max_members: int | None = None) -> tuple[list[int], np.ndarray]:
    """(indices, renormalised weights) of the members kept from candidates with LOO errors
    ``loo_mse``: the ``max_members`` (``ENSEMBLE_MAX_MEMBERS``) heaviest pseudo-BMA weights
    of at least ``ENSEMBLE_MIN_WEIGHT``, the heaviest alone if none is."""
    cap = ENSEMBLE_MAX_MEMBERS if max_members is None else max_members
    w = pbma_weights(loo_mse, n, temperature)
    order = np.argsort(-w, kind="stable")[:cap]
    keep = [int(i) for i in order if w[i] >= ENSEMBLE_MIN_WEIGHT] or [int(order[0])]
    return keep, w[keep] / w[keep].sum()


def _ensemble(cands: list[Candidate], z: np.ndarray) -> Candidate:
    """Pseudo-BMA average (log space) of ``cands`` (``pbma_members``); one member: that
    candidate itself."""
    mse = np.array([float(np.mean((c.loo_log - z) ** 2)) for c in cands])
    keep, weights = pbma_members(mse, len(z))
    if len(keep) == 1:
        return cands[keep[0]]
    members = [cands[i] for i in keep]
    params: dict = {"members": [{"kind": c.kind, "params": c.params} for c in members],
                    "weights": [float(x) for x in weights]}
    loo = np.tensordot(weights, np.stack([c.loo_log for c in members]), axes=1)
    return Candidate(Ensemble.name, params, loo)


def member_kinds(head: HeadFit) -> list[str]:
    """The candidate kinds a head is made of (``[head.kind]`` for a single head)."""
    if head.kind not in HEADS:
        return [head.kind]
    return head_kind(head.kind).member_kinds(head.params)


def _loo_scores(cand: Candidate, z: np.ndarray) -> tuple[float, float]:
    """(LOO Spearman, LOO mean squared log error) of a candidate."""
    rho = spearman(cand.loo_log, z) if len(z) >= 3 else float("nan")
    return rho, float(np.mean((cand.loo_log - z) ** 2))
