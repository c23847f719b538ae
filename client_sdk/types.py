"""Plain result objects returned by the SDK (numpy arrays, no protobuf)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    description: str
    num_genes: int
    cardinalities: tuple[int, ...]
    gene_names: tuple[str, ...]
    num_architectures: int
    space_size: int
    table_devices: tuple[str, ...]
    accuracy_metrics: tuple[str, ...]
    example_arch: str
    #: the space-language definition (canonical JSON); "" for the bundled benchmark spaces
    definition: str = ""
    owner: str = ""


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    space: str
    full_name: str
    source: str
    head_kind: str
    num_samples: int
    expected_spearman: float
    monotonicity: float
    contract: dict
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    head_fit_ms: float
    quality: str = "good"  # "good" | "low": see DeviceQuality in the proto
    flops_spearman: float = float("nan")  # the FLOPs ranking's LOO Spearman, same samples
    advised_samples: int = 0  # total measurements advised
    warnings: tuple[str, ...] = ()  # plain-language reasons for doubt
    owner: str = ""  # tenant that registered it ("" = nobody: table/unowned devices)


@dataclass(frozen=True)
class RankResult:
    """Per-device predictions for one batch. Dicts are keyed by the device names as asked.

    ``latency_ms[d][i]`` is the prediction for the i-th architecture of the request;
    ``order[d]`` lists request indices fastest first (budget-filtered, top_k-truncated).
    """

    space: str
    num_architectures: int
    devices: tuple[str, ...]
    full_names: dict[str, str]
    latency_ms: dict[str, np.ndarray]
    order: dict[str, np.ndarray]
    lower_ms: dict[str, np.ndarray] = field(default_factory=dict)
    upper_ms: dict[str, np.ndarray] = field(default_factory=dict)
    prob_within_budget: dict[str, np.ndarray] = field(default_factory=dict)
    expected_spearman: dict[str, float] = field(default_factory=dict)
    interval_level: float = 0.8

    def top(self, device: str, k: int) -> np.ndarray:
        """The ``k`` fastest request indices for ``device``."""
        return self.order[device][:k]


@dataclass(frozen=True)
class Comparison:
    spearman_predicted: float
    num_predicted: int
    spearman_measured: float
    num_shared: int
    kendall_predicted: float
