"""A space of given networks: each architecture is one of a list of layer lists.

Arbitrary networks (hand-written torch modules, an ONNX file's graph) do not come from one
skeleton with choices, but the product ranks them the same way: a *network space* has one
gene, ``net``, whose choices are the networks' names, and each network's descriptors are
the sum of its layer rows (``spaces.layers``). Everything else — a transferred basis,
registering a device from a few measured networks, ranking the others — is what the
product does for any space with no table. The definition is plain JSON, built by the SDK
from torch modules (``client_sdk.measure.networks``):

```json
{"name": "my_nets", "description": "...",
 "networks": [{"name": "resnet18", "layers": [["conv", 3, 64, 50176, 12544, 49, 1, 1, 0, 1, 0],
                                              ...]}, ...]}
```

A layer is ``[kind, c_in, c_out, area_in, area_out, kernel_area, groups, bn, bias, reads,
extra_weights]`` (``Layer.to_list``). At most 256 networks per space (one packed gene).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from client_sdk.errors import InvalidArchitecture, InvalidSpaceDefinition
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace, Table
from client_sdk.spaces.descriptors import BASE_NAMES
from client_sdk.spaces.layers import KINDS, NUM_BASE, Layer

MAX_NETWORKS = 256  # one packed byte per gene
MAX_LAYERS = 5000
_LABEL = re.compile(r"^[A-Za-z0-9_.+]{1,64}$")
_BIG = 1 << 40


@dataclass(frozen=True)
class NetworksDefinition:
    name: str
    description: str
    names: tuple[str, ...]
    layers: tuple[tuple[Layer, ...], ...]
    source: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def canonical_json(self) -> str:
        return json.dumps(self.source, sort_keys=True, separators=(",", ":"))


def is_networks_definition(data: Any) -> bool:
    return isinstance(data, Mapping) and "networks" in data


def _layer(raw: Any, path: str) -> Layer:
    if not isinstance(raw, list) or len(raw) not in (10, 11):
        raise InvalidSpaceDefinition(
            path,
            "a layer is [kind, c_in, c_out, area_in, area_out, "
            "kernel_area, groups, bn, bias, reads(, extra_weights)]",
        )
    kind = raw[0]
    if kind not in KINDS:
        raise InvalidSpaceDefinition(
            f"{path}[0]", f"unknown layer kind {kind!r} (known: {', '.join(KINDS)})"
        )
    nums = raw[1:]
    for i, v in enumerate(nums, start=1):
        lo = 0 if i in (7, 8, 10) else 1
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < _BIG:
            raise InvalidSpaceDefinition(f"{path}[{i}]", f"must be an integer >= {lo}, got {v!r}")
    c_in, c_out, a_in, a_out, k_area, groups, bn, bias, reads, *extra = nums
    if bn > 1 or bias > 1:
        raise InvalidSpaceDefinition(path, "bn and bias are 0 or 1")
    if kind == "conv" and (c_in % groups or c_out % groups):
        raise InvalidSpaceDefinition(
            f"{path}[6]", f"groups {groups} do not divide the channels {c_in} -> {c_out}"
        )
    return Layer(
        kind,
        c_in,
        c_out,
        a_in,
        a_out,
        k_area,
        groups,
        bool(bn),
        bool(bias),
        reads,
        extra[0] if extra else 0,
    )


def parse_networks(data: Mapping[str, Any]) -> NetworksDefinition:
    """Validate a network-space definition (errors name the path inside it)."""
    from client_sdk.spaces.language import _NAME

    for key in data:
        if key not in ("name", "description", "networks"):
            raise InvalidSpaceDefinition(
                str(key), "unknown field (allowed: description, name, networks)"
            )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidSpaceDefinition("name", f"must match [a-z][a-z0-9_]{{0,63}}, got {name!r}")
    desc = data.get("description", "")
    if not isinstance(desc, str) or len(desc) > 1000:
        raise InvalidSpaceDefinition("description", "must be a string of at most 1000 chars")
    nets = data.get("networks")
    if not isinstance(nets, list) or not nets:
        raise InvalidSpaceDefinition("networks", "must be a non-empty list")
    if len(nets) > MAX_NETWORKS:
        raise InvalidSpaceDefinition(
            "networks", f"{len(nets)} networks; at most {MAX_NETWORKS} per space"
        )
    names, layers = [], []
    for i, net in enumerate(nets):
        path = f"networks[{i}]"
        if not isinstance(net, dict) or set(net) - {"name", "layers"}:
            raise InvalidSpaceDefinition(path, "a network is {name, layers}")
        label = net.get("name")
        if not isinstance(label, str) or not _LABEL.match(label):
            raise InvalidSpaceDefinition(
                f"{path}.name", f"must be 1-64 characters of [A-Za-z0-9_.+], got {label!r}"
            )
        if label in names:
            raise InvalidSpaceDefinition(f"{path}.name", f"duplicate network name {label!r}")
        rows = net.get("layers")
        if not isinstance(rows, list) or not rows or len(rows) > MAX_LAYERS:
            raise InvalidSpaceDefinition(
                f"{path}.layers", f"must be a list of 1..{MAX_LAYERS} layers"
            )
        names.append(label)
        layers.append(tuple(_layer(r, f"{path}.layers[{j}]") for j, r in enumerate(rows)))
    return NetworksDefinition(
        name, desc, tuple(names), tuple(layers), json.loads(json.dumps(dict(data)))
    )


class NetworkSpace(SearchSpace):
    """One gene ``net``: which of the given networks. No table, no torch builder (the user
    measures their own modules)."""

    has_table = False

    def __init__(self, definition: NetworksDefinition) -> None:
        self.definition = definition
        self.name = definition.name
        self.description = definition.description or (f"{len(definition.names)} given networks")
        self.gene_names = ("net",)
        self.choices = (definition.names,)
        self.cardinalities = np.array([len(definition.names)], dtype=np.int64)

    @property
    def network_layers(self) -> tuple[tuple[Layer, ...], ...]:
        return self.definition.layers

    @property
    def num_architectures(self) -> int:
        return 0

    def layers(self, genes: Sequence[int]) -> list[Layer]:
        return list(self.definition.layers[int(genes[0])])

    def parse(self, arch: str, index: int = 0) -> np.ndarray:
        if not isinstance(arch, str):
            raise InvalidArchitecture(
                f"expected a network name, got {type(arch).__name__}", index=index
            )
        try:
            return np.array([self.definition.names.index(arch.strip())], dtype=GENE_DTYPE)
        except ValueError:
            raise InvalidArchitecture(
                f"unknown network '{arch[:64]}' in space '{self.name}'", index=index, gene=0
            ) from None

    def format(self, genes: np.ndarray) -> str:
        return self.definition.names[int(genes[0])]

    def descriptor_names(self) -> tuple[str, ...]:
        return (*BASE_NAMES, "macs_stage0")

    @functools.cached_property
    def _table_rows(self) -> np.ndarray:
        rows = np.zeros((len(self.definition.names), NUM_BASE + 1))
        for i, net in enumerate(self.definition.layers):
            for layer in net:
                rows[i, :NUM_BASE] += layer.row()
            rows[i, NUM_BASE] = rows[i, 0] + rows[i, 1]
        return rows

    def descriptors(self, genes: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
        rows = self._table_rows if matrix is None else self._table_rows @ matrix
        return rows[np.asarray(genes)[:, 0].astype(np.int64)]

    def flops(self, genes: np.ndarray) -> np.ndarray:
        return self.descriptors(genes)[:, NUM_BASE]

    def params(self, genes: np.ndarray) -> np.ndarray:
        return self.descriptors(genes)[:, 2]

    def _load_table(self) -> Table:
        n = len(self.definition.names)
        genes = np.arange(n, dtype=GENE_DTYPE)[:, None]
        return Table(genes, np.arange(n), (), np.zeros((n, 0)), {})

    def info(self) -> dict:
        return {**super().info(), "definition": self.definition.source}
