"""CompareDevices: monotonicity between two devices of one space (numpy, no gRPC)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from client_sdk.spaces import SearchSpace
from client_sdk.spaces.base import row_keys
from client_sdk.stats import spearman
from oracle_server.store import Device


@dataclass(frozen=True)
class Comparison:
    spearman_predicted: float  # over the space's table architectures (``client_sdk.stats``)
    num_predicted: int
    spearman_measured: float  # on architectures measured on both (nan if < 3)
    num_shared: int
    kendall_predicted: float


def compare_devices(
    space: SearchSpace, a: Device, b: Device, pred_a: np.ndarray, pred_b: np.ndarray
) -> Comparison:
    """``pred_a``/``pred_b``: each device's predictions over the space's table."""
    from scipy.stats import kendalltau  # lazily: scipy.stats costs ~1 s to import

    rho = spearman(pred_a, pred_b)
    tau = float(kendalltau(pred_a, pred_b)[0])
    measured, shared = measured_spearman(space, a, b)
    return Comparison(rho, int(pred_a.shape[0]), measured, shared, tau)


def measurements(space: SearchSpace, device: Device) -> tuple[np.ndarray, np.ndarray]:
    """Measured (genes, latency) of a device: its samples, or its table column."""
    if device.genes is None or device.latency_ms is None:  # a table device
        return space.table.genes, space.table.device_column(device.name)
    return device.genes, device.latency_ms


def measured_spearman(space: SearchSpace, a: Device, b: Device) -> tuple[float, int]:
    """Spearman of measured latencies on architectures measured on both devices.

    An architecture measured several times on one device counts with its first value.
    """
    ga, la = measurements(space, a)
    gb, lb = measurements(space, b)
    ka, kb = row_keys(ga), row_keys(gb)
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=False, return_indices=True)
    if ia.shape[0] < 3:
        return float("nan"), int(ia.shape[0])
    return spearman(la[ia], lb[ib]), int(ia.shape[0])
