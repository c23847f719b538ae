"""``CrossSpacePrior``: the basis devices' layer-level coefficients (``layer_level``) in
absolute units, fit on the whole tables of the allowed spaces (never a held-out one)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from oracle_server.predictor.layer_features import (
    MS_FLOOR,
    NUM_BASE,
    POWER_COLUMNS,
    _cov,
    _impute,
    design,
    table_linear,
    table_power,
)

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")


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
            raise ValueError(
                f"linear coefficients must be ({len(self.devices)}, "
                f"{NUM_BASE + 1}), got {self.linear.shape}"
            )
        if self.power.shape != (len(self.devices), len(POWER_COLUMNS) + 1):
            raise ValueError("power-law coefficients have the wrong shape")

    # ---------------------------------------------------------------- build
    @classmethod
    def from_tables(
        cls, tables: Iterable[tuple[str, str, np.ndarray, np.ndarray]]
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
    def from_bundled(
        cls,
        exclude_space: str | None = None,
        devices: Callable[[str], Sequence[str]] | None = None,
        spaces: Sequence[str] = SPACES,
    ) -> CrossSpacePrior:
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
        return {
            "devices": np.array(self.devices, dtype=str),
            "linear": self.linear,
            "power": self.power,
            "spaces": np.array(self.spaces, dtype=str),
        }

    @classmethod
    def from_arrays(cls, arrays) -> CrossSpacePrior:
        return cls(
            tuple(str(s) for s in np.asarray(arrays["devices"]).tolist()),
            np.asarray(arrays["linear"], dtype=np.float64),
            np.asarray(arrays["power"], dtype=np.float64),
            tuple(str(s) for s in np.asarray(arrays["spaces"]).tolist()),
        )

    def to_json(self) -> str:
        def enc(a: np.ndarray) -> list:
            return [[None if not np.isfinite(v) else float(v) for v in r] for r in a]

        return json.dumps(
            {
                "devices": list(self.devices),
                "linear": enc(self.linear),
                "power": enc(self.power),
                "spaces": list(self.spaces),
            }
        )

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
