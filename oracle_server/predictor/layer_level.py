"""Layer-level latency heads: rank a search space the oracle has no tables for.

A device's latency is modelled on the six space-independent layer descriptors of
``client_sdk.spaces.descriptors.BASE_NAMES`` (dense MACs, depthwise MACs, weights,
activation traffic, executed kernels, element-wise work) in ABSOLUTE units, so a
coefficient learned on one space means the same in another:

    ms = c_0 + sum_j c_j * d_j / GLOBAL_SCALE_j            (``linear``, in ms)
    log ms = b_0 + sum_j b_j * log(d_j)                     (``powerlaw``, in logs)

``CrossSpacePrior`` holds these coefficients fit on the whole tables of the basis devices of
the *allowed* spaces (never the held-out one: ``exclude_space``). On a new device with a few
measured architectures of a new space, ``fit_layer_head`` fits candidates

* ``eb_linear``    the linear model in relative ms with an empirical-Bayes prior: every basis
                   device's coefficients renormalised to the samples' mean latency give the
                   prior mean / covariance; the prior strength by exact leave-one-out;
* ``eb_powerlaw``  the power law with the basis devices' exponents as prior;
* ``basis``        one basis device's layer-level model (its coefficients evaluated on the new
                   space) with a monotone affine recalibration in logs (OneProxy-like);
* ``eb_nnls``      the linear model, non-negative and prior-pulled (augmented NNLS);
* ``nnls``         the naive non-negative fit (``naive_nnls``); ``flops`` ranks by MACs;

and serves the mean log prediction of ``ENSEMBLE`` (``mode="loo"``: the best candidate by
leave-one-out). ``zero_shot`` ranks a new space from a basis device's table in another
space (no sample of the new space).
Everything is plain numpy; parameters are JSON-safe.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from client_sdk.spaces.descriptors import BASE_NAMES
from oracle_server.predictor.heads import _affine_coef, _best_over_scaled_grid, spearman
from oracle_server.predictor.heads.solver import nnls

NUM_BASE = len(BASE_NAMES)
#: fixed absolute unit of each descriptor (same in every space): 1e8 dense MACs, 1e7
#: depthwise MACs, 1e6 weights, 1e7 activation elements, 100 kernels, 1e6 element-wise
GLOBAL_SCALE = np.array([1e8, 1e7, 1e6, 1e7, 100.0, 1e6])
#: power-law inputs: log of these descriptor sums (total MACs, activations, kernels, ...)
POWER_COLUMNS: tuple[tuple[int, ...], ...] = ((0, 1), (2,), (3,), (4,), (5,))
EB_GRID = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
COV_RIDGE = 0.05  # relative diagonal added to the basis covariance
MS_FLOOR = 1e-3
SPACES = ("nasbench201", "fbnet", "ofa_mbv3")
KINDS = ("eb_linear", "eb_nnls", "eb_powerlaw", "basis", "nnls", "flops")



# ------------------------------------------------------------------- features
def design(desc6: np.ndarray) -> np.ndarray:
    """(n, 7) ``[1, d / GLOBAL_SCALE]``."""
    d = _check_desc(desc6)
    return np.c_[np.ones(len(d)), d / GLOBAL_SCALE]


def power_inputs(desc6: np.ndarray) -> np.ndarray:
    """(n, P) logs of the ``POWER_COLUMNS`` sums in global units (>= log of 1 unit / 1e6)."""
    d = _check_desc(desc6)
    cols = [d[:, list(c)].sum(1) / GLOBAL_SCALE[c[0]] for c in POWER_COLUMNS]
    return np.log(np.maximum(np.stack(cols, 1), 1e-6))


def flops_of(desc6: np.ndarray) -> np.ndarray:
    d = _check_desc(desc6)
    return d[:, 0] + d[:, 1]


def _check_desc(desc6: np.ndarray) -> np.ndarray:
    d = np.asarray(desc6, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != NUM_BASE:
        raise ValueError(f"descriptors must be (n, {NUM_BASE}) ({', '.join(BASE_NAMES)}), "
                         f"got shape {d.shape}")
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("descriptors must be finite and non-negative")
    return d


def _check_samples(desc6: np.ndarray, y_ms: np.ndarray, minimum: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    d = _check_desc(desc6)
    y = np.asarray(y_ms, dtype=np.float64).reshape(-1)
    if len(y) != len(d):
        raise ValueError(f"{len(d)} descriptor rows but {len(y)} latencies")
    if len(y) < minimum:
        raise ValueError(f"need at least {minimum} measured architectures, got {len(y)}")
    if not np.isfinite(y).all() or (y <= 0).any():
        raise ValueError("latencies must be finite and > 0 ms")
    if np.ptp(y) <= 1e-12 * np.abs(y).max():
        raise ValueError("all measured latencies are equal: nothing to rank by")
    return d, y


# ---------------------------------------------------------- per-table fits
def nnls_coef(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares (``heads.solver.nnls``) with columns rescaled to unit mean
    (conditioning only)."""
    sc = np.abs(x).mean(0)
    sc = np.where(sc > 0, sc, 1.0)
    return nnls(x / sc, y) / sc


def table_linear(desc6: np.ndarray, y_ms: np.ndarray) -> np.ndarray:
    """(7,) absolute non-negative coefficients of a whole table; NaN where the descriptor
    does not vary over the table (not identified, e.g. depthwise MACs in NAS-Bench-201)."""
    x = design(desc6)
    c = nnls_coef(x, y_ms)
    const = np.r_[False, np.ptp(x[:, 1:], axis=0) <= 0]
    c[const] = np.nan
    return c


def table_power(desc6: np.ndarray, y_ms: np.ndarray) -> np.ndarray:
    """(1 + P,) least-squares power-law coefficients of a whole table (NaN: unidentified)."""
    u = power_inputs(desc6)
    const = np.ptp(u, axis=0) <= 1e-12
    m = np.c_[np.ones(len(u)), u[:, ~const]]
    beta = np.linalg.lstsq(m, np.log(np.maximum(y_ms, MS_FLOOR)), rcond=None)[0]
    out = np.full(1 + u.shape[1], np.nan)
    out[0] = beta[0]
    out[1:][~const] = beta[1:]
    return out


def _impute(a: np.ndarray) -> np.ndarray:
    """NaN entries replaced by their column's mean over the rows that have it (0 if none)."""
    a = np.array(a, dtype=np.float64)
    for j in range(a.shape[1]):
        bad = ~np.isfinite(a[:, j])
        if bad.any():
            a[bad, j] = np.nanmean(a[~bad, j]) if (~bad).any() else 0.0
    return a


def _cov(a: np.ndarray) -> np.ndarray:
    if len(a) > 1:
        cov = np.atleast_2d(np.cov(a.T))
    else:
        cov = np.diag(np.maximum(a[0] ** 2, 1e-4))
    return cov + COV_RIDGE * np.diag(np.maximum(np.diag(cov), 1e-8))


# ------------------------------------------------------------------ the prior
@dataclass(frozen=True)
class CrossSpacePrior:
    """Basis devices' layer-level coefficients in absolute units, across spaces.

    ``linear`` (B, 7): ms per ``GLOBAL_SCALE`` unit, ``[intercept, 6 descriptors]``;
    ``power`` (B, 1 + P): power-law coefficients; NaN where a device's space does not
    identify a coefficient. ``devices``: ``"space/device"`` per row.
    """

    devices: tuple[str, ...]
    linear: np.ndarray
    power: np.ndarray
    spaces: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.devices) == 0:
            raise ValueError("a cross-space prior needs at least one basis device")
        if self.linear.shape != (len(self.devices), NUM_BASE + 1):
            raise ValueError(f"linear coefficients must be ({len(self.devices)}, "
                             f"{NUM_BASE + 1}), got {self.linear.shape}")
        if self.power.shape != (len(self.devices), len(POWER_COLUMNS) + 1):
            raise ValueError("power-law coefficients have the wrong shape")

    # ---------------------------------------------------------------- build
    @classmethod
    def from_tables(cls, tables: Iterable[tuple[str, str, np.ndarray, np.ndarray]]
                    ) -> CrossSpacePrior:
        """From ``(space, device, desc6 (n, 6), latency_ms (n,))`` tables."""
        names, lin, pw, spaces = [], [], [], []
        for space, device, desc6, y in tables:
            names.append(f"{space}/{device}")
            lin.append(table_linear(desc6, y))
            pw.append(table_power(desc6, y))
            if space not in spaces:
                spaces.append(space)
        return cls(tuple(names), np.array(lin), np.array(pw), tuple(spaces))

    @classmethod
    def from_bundled(cls, exclude_space: str | None = None,
                     devices: Callable[[str], Sequence[str]] | None = None,
                     spaces: Sequence[str] = SPACES) -> CrossSpacePrior:
        """From the bundled tables of every space but ``exclude_space`` (never read).

        ``devices(space)``: the basis devices used per space (default: HELP's training
        devices of that space, so no validation / test device enters the prior).
        """
        from client_sdk.spaces import get_space
        from client_sdk.spaces.descriptors import descriptors

        if devices is None:
            devices = default_basis_devices
        rows = []
        for name in spaces:
            if name == exclude_space:
                continue
            sp = get_space(name)
            d6 = descriptors(name, sp.table.genes)[:, :NUM_BASE]
            for dev in devices(name):
                rows.append((name, dev, d6, sp.table.device_column(dev)))
        return cls.from_tables(rows)

    # ---------------------------------------------------------- serialise
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"devices": np.array(self.devices, dtype=str), "linear": self.linear,
                "power": self.power, "spaces": np.array(self.spaces, dtype=str)}

    @classmethod
    def from_arrays(cls, arrays) -> CrossSpacePrior:
        return cls(tuple(str(s) for s in np.asarray(arrays["devices"]).tolist()),
                   np.asarray(arrays["linear"], dtype=np.float64),
                   np.asarray(arrays["power"], dtype=np.float64),
                   tuple(str(s) for s in np.asarray(arrays["spaces"]).tolist()))

    def to_json(self) -> str:
        def enc(a: np.ndarray) -> list:
            return [[None if not np.isfinite(v) else float(v) for v in r] for r in a]

        return json.dumps({"devices": list(self.devices), "linear": enc(self.linear),
                           "power": enc(self.power), "spaces": list(self.spaces)})

    @classmethod
    def from_json(cls, text: str) -> CrossSpacePrior:
        o = json.loads(text)

        def dec(a: list) -> np.ndarray:
            return np.array([[np.nan if v is None else v for v in r] for r in a], dtype=float)

        return cls(tuple(o["devices"]), dec(o["linear"]), dec(o["power"]), tuple(o["spaces"]))

    # ------------------------------------------------------------- priors
    def relative_thetas(self, x: np.ndarray) -> np.ndarray:
        """(B, 7) each basis device's coefficients relative to its mean predicted latency
        over the design rows ``x`` (what ``y / mean(y)`` would be on that device)."""
        c = np.where(np.isfinite(self.linear), self.linear, 0.0)
        mean = np.maximum(x.mean(0) @ c.T, 1e-9)
        th = c / mean[:, None]
        return _impute(np.where(np.isfinite(self.linear), th, np.nan))

    def linear_prior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        th = self.relative_thetas(x)
        return th.mean(0), _cov(th)

    def power_prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Exponents' mean and covariance (intercept excluded: it is per device)."""
        b = _impute(self.power[:, 1:])
        return b.mean(0), _cov(b)

    def basis_predictions(self, desc6: np.ndarray) -> np.ndarray:
        """(n, B) log of each basis device's linear model on ``desc6`` (imputed coefficients:
        a coefficient the device's space did not identify takes the basis mean in units of
        the device's own dense-MAC cost... simplified to the column mean of the others)."""
        c = _impute(self.linear)
        ms = design(desc6) @ c.T
        return np.log(np.maximum(ms, MS_FLOOR))


def default_basis_devices(space: str) -> tuple[str, ...]:
    from oracle_server.evaluation import HELP_SPLITS

    return HELP_SPLITS[space].train


# --------------------------------------------------------------------- heads
@dataclass(frozen=True)
class LayerHead:
    """A fitted layer-level head. ``params`` is JSON-safe; ``predict_ms`` is vectorised."""

    kind: str
    params: dict
    loo_spearman: float = float("nan")

    def predict_log(self, desc6: np.ndarray) -> np.ndarray:
        p = self.params
        if self.kind == "ensemble":
            parts = [LayerHead.from_params(m).predict_log(desc6) for m in p["members"]]
            if not parts:
                raise ValueError("an ensemble head needs members")
            if "standardise" in p:  # members on a common scale (zero-shot), back to log ms
                (mu, sd), out = np.asarray(p["standardise"]).T, p["out"]
                parts = [(q - m) / s for q, m, s in zip(parts, mu, sd, strict=True)]
                return np.mean(parts, axis=0) * out[1] + out[0]
            return np.mean(parts, axis=0)
        if self.kind in ("eb_linear", "eb_nnls", "nnls", "basis", "zero_shot_linear"):
            ms = design(desc6) @ np.asarray(p["theta"])
            z = np.log(np.maximum(ms, p.get("floor_ms", MS_FLOOR)))
            return p.get("a", 1.0) * z + p.get("c", 0.0)
        if self.kind in ("eb_powerlaw", "zero_shot_powerlaw"):
            return p["b0"] + power_inputs(desc6) @ np.asarray(p["b"])
        if self.kind == "flops":
            return p["a"] * np.log(np.maximum(flops_of(desc6), 1.0)) + p["c"]
        raise ValueError(f"unknown layer head kind {self.kind!r}")

    def predict_ms(self, desc6: np.ndarray) -> np.ndarray:
        return np.exp(self.predict_log(desc6))

    def to_params(self) -> dict:
        return {"kind": self.kind, "params": self.params,
                "loo_spearman": None if not np.isfinite(self.loo_spearman)
                else float(self.loo_spearman)}

    @classmethod
    def from_params(cls, params: dict) -> LayerHead:
        loo = params.get("loo_spearman")
        return cls(str(params["kind"]), dict(params["params"]),
                   float("nan") if loo is None else float(loo))


def _loo_rho(loo: np.ndarray, z: np.ndarray) -> float:
    r = spearman(loo, z)
    return r if np.isfinite(r) else -1.0


def fit_eb_linear(desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
                  ) -> tuple[LayerHead, np.ndarray]:
    """y / s = [1, d / scale] theta, theta ~ N(mu, g cov): mu, cov from the basis devices'
    coefficients renormalised to these samples; rows weighted by 1 / y (relative error)."""
    x = design(desc6)
    s = float(y.mean())
    yr = y / s
    w = 1.0 / yr
    mu, cov = prior.linear_prior(x)
    chol = np.linalg.cholesky(cov)
    m = (x * w[:, None]) @ chol
    base = x @ mu
    r = (yr - base) * w
    beta, loo, g = _best_over_scaled_grid(m, np.ones(m.shape[1]), EB_GRID, r)
    theta = (mu + chol @ beta) * s
    floor = float(0.2 * y.min())
    loo_ms = (loo / w + base) * s
    head = LayerHead("eb_linear", {"theta": theta.tolist(), "floor_ms": floor, "prior": g})
    return head, np.log(np.maximum(loo_ms, floor))


def fit_eb_powerlaw(desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
                    ) -> tuple[LayerHead, np.ndarray]:
    """log y = b0 + u b, b ~ N(mu, g cov) from the basis devices' exponents, b0 free."""
    u = power_inputs(desc6)
    z = np.log(y)
    mu, cov = prior.power_prior()
    um = u.mean(0)
    uc = u - um
    zc = z - z.mean()
    chol = np.linalg.cholesky(cov)
    # centring removes the free intercept exactly (LOO of the intercept ignored: O(1/n))
    m = uc @ chol
    r = zc - uc @ mu
    beta, loo, g = _best_over_scaled_grid(m, np.ones(m.shape[1]), EB_GRID, r)
    b = mu + chol @ beta
    b0 = float(z.mean() - um @ b)
    head = LayerHead("eb_powerlaw", {"b0": b0, "b": b.tolist(), "prior": g})
    return head, loo + uc @ mu + z.mean()


def fit_basis(desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
              ) -> tuple[LayerHead, np.ndarray]:
    """The basis device whose layer-level model best ranks the samples, recalibrated by a
    monotone affine map in logs; the choice is re-made inside each leave-one-out fold."""
    from oracle_server.predictor.heads import best_basis

    lb = prior.basis_predictions(desc6)
    z = np.log(y)
    n = len(z)
    keep = ~np.eye(n, dtype=bool)
    loo = np.empty(n)
    for i in range(n):
        k = best_basis(lb[keep[i]], z[keep[i]])
        a, c = _affine_coef(lb[keep[i], k], z[keep[i]])
        loo[i] = a * lb[i, k] + c
    k = best_basis(lb, z)
    a, c = _affine_coef(lb[:, k], z)
    theta = _impute(prior.linear)[k]
    head = LayerHead("basis", {"theta": theta.tolist(), "a": a, "c": c,
                               "device": prior.devices[k]})
    return head, loo


EB_NNLS_GRID = (0.1, 1.0, 10.0, 100.0)
EB_NNLS_WEIGHTS = "relative"  # "relative" (1 / y) or "none"


def _eb_nnls_solve(x: np.ndarray, yr: np.ndarray, w: np.ndarray, mu: np.ndarray,
                   pinv_chol: np.ndarray, g: float) -> np.ndarray:
    a = np.r_[x * w[:, None], pinv_chol / np.sqrt(g)]
    b = np.r_[yr * w, pinv_chol @ mu / np.sqrt(g)]
    return nnls(a, b)


def fit_eb_nnls(desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
                ) -> tuple[LayerHead, np.ndarray]:
    """Non-negative linear model in relative ms pulled towards the basis devices' prior:
    min |W (x theta - y / s)|^2 + |L^-1 (theta - mu)|^2 / g, theta >= 0, g by exact LOO."""
    x = design(desc6)
    s = float(y.mean())
    yr = y / s
    w = 1.0 / yr if EB_NNLS_WEIGHTS == "relative" else np.ones(len(y))
    mu, cov = prior.linear_prior(x)
    pinv_chol = np.linalg.inv(np.linalg.cholesky(cov))
    n = len(y)
    keep = ~np.eye(n, dtype=bool)
    best: tuple | None = None
    for g in EB_NNLS_GRID:
        loo = np.array([x[i] @ _eb_nnls_solve(x[keep[i]], yr[keep[i]], w[keep[i]], mu,
                                              pinv_chol, g) for i in range(n)])
        err = float(np.mean(((loo - yr) * w) ** 2))
        if best is None or err < best[0]:
            best = (err, g, loo)
    assert best is not None
    _, g, loo = best
    theta = _eb_nnls_solve(x, yr, w, mu, pinv_chol, g) * s
    floor = float(0.2 * y.min())
    head = LayerHead("eb_nnls", {"theta": theta.tolist(), "floor_ms": floor, "prior": g})
    return head, np.log(np.maximum(loo * s, floor))


def naive_nnls(desc6: np.ndarray, y: np.ndarray) -> LayerHead:
    """The issue's naive baseline: scipy nnls of y on [1, d_j / scale_j] (scale_j: the
    samples' mean of d_j; 1 where it is 0)."""
    d = _check_desc(desc6)
    c = nnls_coef(np.c_[np.ones(len(d)), d], np.asarray(y, dtype=np.float64))
    theta = np.r_[c[0], c[1:] * GLOBAL_SCALE]  # per absolute unit -> per GLOBAL_SCALE unit
    return LayerHead("nnls", {"theta": theta.tolist(), "floor_ms": MS_FLOOR})


def _fit_nnls_loo(desc6: np.ndarray, y: np.ndarray) -> tuple[LayerHead, np.ndarray]:
    n = len(y)
    keep = ~np.eye(n, dtype=bool)
    loo = np.array([naive_nnls(desc6[keep[i]], y[keep[i]]).predict_log(desc6[i:i + 1])[0]
                    for i in range(n)])
    return naive_nnls(desc6, y), loo


def _fit_flops(desc6: np.ndarray, y: np.ndarray) -> tuple[LayerHead, np.ndarray]:
    u = np.log(np.maximum(flops_of(desc6), 1.0))
    z = np.log(y)
    n = len(z)
    keep = ~np.eye(n, dtype=bool)
    loo = np.empty(n)
    for i in range(n):
        a, c = _affine_coef(u[keep[i]], z[keep[i]])
        loo[i] = a * u[i] + c
    a, c = _affine_coef(u, z)
    return LayerHead("flops", {"a": a, "c": c}), loo


def fit_candidates(desc6: np.ndarray, y_ms: np.ndarray, prior: CrossSpacePrior,
                   kinds: Sequence[str] = KINDS) -> dict[str, tuple[LayerHead, np.ndarray]]:
    """Every candidate kind with its leave-one-out log predictions."""
    d, y = _check_samples(desc6, y_ms)
    out: dict[str, tuple[LayerHead, np.ndarray]] = {}
    for kind in kinds:
        if kind == "eb_linear":
            head, loo = fit_eb_linear(d, y, prior)
        elif kind == "eb_powerlaw":
            head, loo = fit_eb_powerlaw(d, y, prior)
        elif kind == "basis":
            head, loo = fit_basis(d, y, prior)
        elif kind == "nnls":
            head, loo = _fit_nnls_loo(d, y)
        elif kind == "eb_nnls":
            head, loo = fit_eb_nnls(d, y, prior)
        elif kind == "flops":
            head, loo = _fit_flops(d, y)
        else:
            raise ValueError(f"unknown layer head kind {kind!r} (known: {', '.join(KINDS)})")
        rho = _loo_rho(loo, np.log(y))
        out[kind] = (LayerHead(head.kind, head.params, rho), loo)
    return out


#: the served combination: the mean log prediction of these members (chosen on HELP
#: validation devices of all three spaces under leave-space-out, k = 10: see
#: ``benchmarks/leave_space_out.py``); ``mode="loo"`` picks one candidate by LOO instead
ENSEMBLE: tuple[str, ...] = ("nnls", "eb_linear")


def fit_layer_head(desc6: np.ndarray, y_ms: np.ndarray, prior: CrossSpacePrior,
                   kinds: Sequence[str] = ENSEMBLE, mode: str = "ensemble") -> LayerHead:
    """Layer-level head from a device's few measured architectures of a new space.

    ``mode="ensemble"``: mean log prediction of the ``kinds`` candidates (its
    ``loo_spearman`` from the members' exact leave-one-out predictions); ``"loo"``: the one
    candidate with the best leave-one-out Spearman. Raises ``ValueError`` on fewer than 3
    samples, equal latencies or malformed descriptors.
    """
    cands = fit_candidates(desc6, y_ms, prior, kinds)
    z = np.log(np.asarray(y_ms, dtype=np.float64))
    if mode == "loo":
        best = max(cands, key=lambda k: (round(cands[k][0].loo_spearman, 6), -kinds.index(k)))
        return cands[best][0]
    if mode != "ensemble":
        raise ValueError(f"unknown mode {mode!r} (ensemble, loo)")
    if len(cands) == 1:
        return next(iter(cands.values()))[0]
    loo = np.mean([c[1] for c in cands.values()], axis=0)
    members = [c[0].to_params() for c in cands.values()]
    return LayerHead("ensemble", {"members": members}, _loo_rho(loo, z))


# ----------------------------------------------------------------- zero-shot
#: zero-shot members (mean log prediction), chosen on the train + validation devices shared
#: by two spaces, averaged over the four directions (test devices excluded)
ZERO_SHOT_MEMBERS: tuple[str, ...] = ("linear", "powerlaw", "flops")


def zero_shot(device_table_desc6: np.ndarray, device_table_ms: np.ndarray,
              prior: CrossSpacePrior | None = None,
              members: Sequence[str] = ZERO_SHOT_MEMBERS,
              target_desc6: np.ndarray | None = None) -> LayerHead:
    """A basis device's layer-level model fit on its whole table in another space, to rank a
    new space with no sample of it: the mean log prediction of the non-negative linear model
    in ms, the power law and the FLOPs law, each fit on the source table. ``prior`` (other
    devices, other spaces) fills linear coefficients the source space does not identify
    (e.g. depthwise MACs from NAS-Bench-201); without it they are 0.

    ``target_desc6``: descriptors of (a sample of) the new space's candidate architectures
    (no latency): each member's log prediction is standardised over them before averaging,
    so a member that extrapolates wildly in the new space cannot dominate the mean;
    without it the members are averaged in log ms over the source table's statistics."""
    d, y = _check_samples(device_table_desc6, device_table_ms)
    parts = []
    for member in members:
        if member == "linear":
            c = table_linear(d, y)
            if prior is not None and not np.isfinite(c).all():
                c = _fill_from_prior(c, prior)
            c = np.where(np.isfinite(c), c, 0.0)
            floor = float(0.2 * y.min())
            parts.append(LayerHead("zero_shot_linear", {"theta": c.tolist(),
                                                        "floor_ms": floor}))
        elif member == "powerlaw":
            b = table_power(d, y)
            b = np.where(np.isfinite(b), b, 0.0)
            parts.append(LayerHead("zero_shot_powerlaw", {"b0": float(b[0]),
                                                          "b": b[1:].tolist()}))
        elif member == "flops":
            a, c0 = _affine_coef(np.log(np.maximum(flops_of(d), 1.0)), np.log(y))
            parts.append(LayerHead("flops", {"a": a, "c": c0}))
        else:
            raise ValueError(f"unknown zero-shot member {member!r}")
    if len(parts) == 1:
        return parts[0]
    ref = d if target_desc6 is None else _check_desc(target_desc6)
    preds = [q.predict_log(ref) for q in parts]
    stats = [[float(q.mean()), float(q.std()) if q.std() > 0 else 1.0] for q in preds]
    z = np.log(y)
    return LayerHead("ensemble", {"members": [q.to_params() for q in parts],
                                  "standardise": stats,
                                  "out": [float(z.mean()), float(z.std())]})


def _fill_from_prior(c: np.ndarray, prior: CrossSpacePrior) -> np.ndarray:
    """Missing coefficients: the basis devices' mean ratio to this device's dense-MAC cost."""
    lin = prior.linear
    out = c.copy()
    for j in np.flatnonzero(~np.isfinite(c)):
        ok = np.isfinite(lin[:, j]) & np.isfinite(lin[:, 1]) & (lin[:, 1] > 0)
        if ok.any() and np.isfinite(c[1]):
            out[j] = c[1] * float(np.median(lin[ok, j] / lin[ok, 1]))
    return out
