"""Objectives of the search: an accuracy to maximise and latencies to minimise.

Accuracy is either a user callable ``genes (n, g) int16 -> accuracy (n,)`` (any scale; higher
is better), the name of a metric bundled with the space's table (NAS-Bench-201:
``'cifar10' | 'cifar100' | 'imagenet16_120'``, test accuracy in percent), or ``'params'``
(log10 of the parameter count: a stand-in for any space, e.g. one from a definition).

Latency objectives are built from the predicted latency matrix ``(n, d)`` (one column per
device, in the order the devices were asked):

* ``latency_mode='per_device'``: one objective per device, the latency in ms;
* ``latency_mode='worst'``: a single objective, the max over devices of latency divided by
  that device's median latency (medians fixed from the first ranked batch, so the objective
  never changes during a run).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from client_sdk.spaces import SearchSpace

AccuracyFn = Callable[[np.ndarray], np.ndarray]
Objective = str | AccuracyFn
LATENCY_MODES = ("per_device", "worst")


def table_metrics(space: SearchSpace) -> tuple[str, ...]:
    """Accuracy metrics bundled with the space's table (empty for most spaces)."""
    return tuple(space.table.accuracy)


def table_accuracy(space: SearchSpace, metric: str) -> AccuracyFn:
    """Accuracy looked up in the space's bundled table (``KeyError`` for unknown genes)."""
    metrics = table_metrics(space)
    if metric not in metrics:
        known = ", ".join(metrics) or "none"
        raise ValueError(
            f"space '{space.name}' has no bundled accuracy '{metric}' (bundled: {known}); "
            "pass a callable genes -> accuracy instead"
        )
    column = space.table.accuracy[metric]

    def accuracy(genes: np.ndarray) -> np.ndarray:
        rows = space.table_rows(genes)
        if np.any(rows < 0):
            bad = space.format(genes[int(np.argmax(rows < 0))])
            raise KeyError(f"architecture not in the '{space.name}' table: {bad}")
        return column[rows]

    accuracy.__name__ = f"table_{metric}"
    return accuracy


def params_proxy(space: SearchSpace) -> AccuracyFn:
    """A cheap, label-free accuracy proxy: log10 of the parameter count (bigger ~ better)."""

    def accuracy(genes: np.ndarray) -> np.ndarray:
        return np.log10(space.params(genes))

    accuracy.__name__ = "log10_params"
    return accuracy


def resolve_objective(space: SearchSpace, objective: Objective) -> tuple[str, AccuracyFn]:
    """``(name, fn)`` for a metric name or a callable (its name is the callable's name)."""
    if isinstance(objective, str):
        if objective == "params" and "params" not in table_metrics(space):
            # any space (e.g. one from a definition, with no accuracy table): model size as
            # a stand-in for accuracy
            return "log10_params", params_proxy(space)
        return objective, table_accuracy(space, objective)
    if callable(objective):
        return getattr(objective, "__name__", "custom"), objective
    raise TypeError(f"objective must be a metric name or a callable, got {type(objective)}")


def evaluate_accuracy(fn: AccuracyFn, genes: np.ndarray) -> np.ndarray:
    """Call the accuracy function and check its output shape and finiteness."""
    acc = np.asarray(fn(genes), dtype=np.float64).reshape(-1)
    if acc.shape[0] != genes.shape[0]:
        raise ValueError(f"accuracy function returned {acc.shape[0]} values for {len(genes)}")
    if not np.all(np.isfinite(acc)):
        raise ValueError("accuracy function returned non-finite values")
    return acc


def latency_budgets(
    devices: Sequence[str], max_latency_ms: float | Mapping[str, float] | None
) -> np.ndarray:
    """Per-device budget ``(d,)``; ``inf`` where a device has none."""
    out = np.full(len(devices), np.inf)
    if max_latency_ms is None:
        return out
    if isinstance(max_latency_ms, Mapping):
        unknown = set(max_latency_ms) - set(devices)
        if unknown:
            raise ValueError(f"max_latency_ms names devices not searched: {sorted(unknown)}")
        for i, dev in enumerate(devices):
            out[i] = float(max_latency_ms.get(dev, np.inf))
    else:
        out[:] = float(max_latency_ms)
    if np.any(out <= 0):
        raise ValueError("max_latency_ms must be positive")
    return out


def latency_objectives(
    latency: np.ndarray, mode: str, medians: np.ndarray | None = None
) -> np.ndarray:
    """Latency objective columns ``(n, d)`` or ``(n, 1)`` from predicted latency ``(n, d)``."""
    if mode == "per_device":
        return latency
    if mode == "worst":
        if medians is None:
            raise ValueError("latency_mode='worst' needs the per-device medians")
        return np.max(latency / medians[None, :], axis=1, keepdims=True)
    raise ValueError(f"latency_mode must be one of {LATENCY_MODES}, got '{mode}'")


def objective_matrix(
    accuracy: np.ndarray, latency: np.ndarray, mode: str, medians: np.ndarray | None
) -> np.ndarray:
    """pymoo objectives (all minimised): ``[-accuracy, latency objective(s)]``."""
    return np.column_stack([-accuracy, latency_objectives(latency, mode, medians)])
