"""Rank arbitrary networks for a device: trace torch modules (or read ONNX files) into a
network space, measure a few, register a device from them, rank the rest (issue 26,
"arbitrary networks").

```python
from client_sdk import OracleClient
from client_sdk.measure.networks import network_space, measure_networks, rank_networks

models = {"resnet18": resnet18(), "mbv2": mobilenet_v2(), ...}       # plain nn.Modules
with OracleClient("localhost:50051") as oracle:
    space = network_space(oracle, models, (1, 3, 224, 224), name="my_nets")
    ms = measure_networks(models, (1, 3, 224, 224), names=["resnet18", "mbv2"], threads=1)
    oracle.register_device("my_cpu", space, (list(ms), list(ms.values())))
    ranked = rank_networks(oracle, space, "my_cpu")     # {name: predicted ms}, fastest first
```

A network may also be an ONNX file: a ``str`` / ``Path`` ending in ``.onnx`` or an
``onnx.ModelProto``, read by ``client_sdk.measure.onnx_layers`` at the graph's own input
shape (``input_shape`` applies to modules only; a ``(file, input_shape)`` pair overrides a
symbolic or different one). ``network_definition`` / ``network_space`` accept both kinds
in one mapping; ``measure_networks`` times torch modules only (time ONNX files with the
runtime you deploy and register the device from those latencies).

```python
space = network_space(oracle, {"r18": "resnet18.onnx", "mine": my_module}, (1, 3, 224, 224))
```

The network space (``client_sdk.spaces.networks``) is registered through ``RegisterSpace``
like any definition: idempotent for the same networks, so calling ``network_space`` again
with the same models is cheap. Measuring uses the product's harness (interleaved rounds,
drift correction) on the modules themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from client_sdk.measure.layers import layers
from client_sdk.spaces import SearchSpace
from client_sdk.spaces.layers import Layer

if TYPE_CHECKING:
    from client_sdk.measure.harness import HarnessConfig, InterleavedMeasurement

#: name -> an ``nn.Module``, an ONNX file (``.onnx`` path or ``onnx.ModelProto``), or a
#: ``(module or ONNX file, input shape)`` pair
Models = Mapping[str, Any]


def is_onnx(value: Any) -> bool:
    """An ONNX network: a ``str`` / ``os.PathLike`` ending in ``.onnx`` or a ModelProto."""
    if isinstance(value, str | os.PathLike):
        return os.fspath(value).lower().endswith(".onnx")
    return type(value).__name__ == "ModelProto" and type(value).__module__.startswith("onnx")


def _unpair(value: Any) -> tuple[Any, tuple[int, ...] | None]:
    """A network and its own input shape (``None``: not given)."""
    if isinstance(value, tuple):
        return value[0], tuple(value[1])
    return value, None


def _split(value: Any, input_shape: tuple[int, ...] | None) -> tuple[nn.Module, tuple[int, ...]]:
    """A module (at ``input_shape``) or a ``(module, its own input shape)`` pair."""
    module, shape = _unpair(value)
    shape = shape or (None if input_shape is None else tuple(input_shape))
    if shape is None:
        raise ValueError("give input_shape, or (module, input_shape) pairs")
    return module, shape


def _network_layers(value: Any, input_shape: tuple[int, ...] | None) -> list[Layer]:
    """A module traced at its input shape, or an ONNX graph read at its own (or the pair's)."""
    net, shape = _unpair(value)
    if is_onnx(net):
        from client_sdk.measure.onnx_layers import onnx_layers

        return onnx_layers(net, shape)
    module, shape = _split(value, input_shape)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"a network is an nn.Module or an ONNX file (.onnx path or "
            f"onnx.ModelProto), got {type(module).__name__} {str(module)[:80]!r}"
        )
    return layers(module, shape)


def network_definition(
    models: Models,
    input_shape: tuple[int, ...] | None = None,
    name: str | None = None,
    description: str = "",
) -> dict:
    """The network-space definition of ``models`` (name -> module or ONNX file, or name ->
    (either, input shape)), each traced at its input shape (batch included; an ONNX file at
    its graph's input shape unless paired with one). ``name`` defaults to ``nets_`` + a
    content hash."""
    nets = []
    for label, value in models.items():
        rows = _network_layers(value, input_shape)
        nets.append({"name": label, "layers": [x.to_list() for x in rows]})
    if name is None:
        digest = hashlib.sha256(json.dumps(nets, sort_keys=True).encode()).hexdigest()[:12]
        name = f"nets_{digest}"
    n_onnx = sum(is_onnx(_unpair(v)[0]) for v in models.values())
    default = (
        f"{len(nets)} networks ({n_onnx} from ONNX)" if n_onnx else f"{len(nets)} torch networks"
    )
    return {"name": name, "description": description or default, "networks": nets}


def network_space(
    client: Any, models: Models, input_shape: tuple[int, ...] | None = None, name: str | None = None
) -> str:
    """Register (or find again) the network space of ``models`` (modules and / or ONNX
    files, see ``network_definition``) on the server; its name."""
    info = client.register_space(network_definition(models, input_shape, name))
    return info.name


def rank_networks(
    client: Any, space: str, device: str, names: Iterable[str] | None = None
) -> dict[str, float]:
    """Predicted latency (ms) of the space's networks (or ``names``) on ``device``, fastest
    first."""
    from client_sdk.spaces import get_space

    sp = get_space(space)
    wanted = list(names) if names is not None else list(sp.choices[0])
    res = client.rank(space, wanted, [device])
    lat = np.asarray(res.latency_ms[device], dtype=np.float64)
    order = np.argsort(lat, kind="stable")
    return {wanted[i]: float(lat[i]) for i in order}


def time_networks(
    models: Models,
    input_shape: tuple[int, ...] | None = None,
    names: Sequence[str] | None = None,
    config: HarnessConfig | None = None,
    progress: bool | None = None,
) -> tuple[list[str], InterleavedMeasurement]:
    """Time ``models`` (or ``names`` of them) on this machine with the product's harness
    (all built first, then interleaved rounds, drift corrected): the names in the
    measurement's row order, and the measurement (retest halves, CV, summary). Inputs are
    random with ``config.seed``."""
    from client_sdk.measure.harness import Harness, HarnessConfig

    chosen = list(names) if names is not None else list(models)
    unknown = [n for n in chosen if n not in models]
    if unknown:
        raise KeyError(f"unknown network(s) {unknown}")
    onnx_files = [n for n in chosen if is_onnx(_unpair(models[n])[0])]
    if onnx_files:
        raise TypeError(
            f"time_networks times torch modules; {onnx_files} are ONNX files: time "
            "them with the runtime you deploy and register the device from those "
            "latencies"
        )
    cfg = config or HarnessConfig()

    def builder(
        _space: Any, genes: np.ndarray, _batch: int, device: str
    ) -> tuple[nn.Module, torch.Tensor]:
        module, shape = _split(models[chosen[int(np.asarray(genes).reshape(-1)[0])]], input_shape)
        gen = torch.Generator().manual_seed(cfg.seed)
        return module.eval().to(device), torch.randn(*shape, generator=gen).to(device)

    # the builder knows the networks: the harness only passes the space through to it
    genes = np.arange(len(chosen), dtype=np.int16)[:, None]
    return chosen, Harness(cfg, builder=builder).measure_interleaved(
        cast(SearchSpace, None), genes, progress=progress, desc="networks"
    )


def measure_networks(
    models: Models,
    input_shape: tuple[int, ...] | None = None,
    names: Sequence[str] | None = None,
    threads: int | None = 1,
    rounds: int = 6,
    runs: int = 5,
    progress: bool | None = None,
) -> dict[str, float]:
    """Latency (ms) of ``models`` (or ``names`` of them) on this machine (``time_networks``)."""
    from client_sdk.measure.harness import HarnessConfig

    chosen, result = time_networks(
        models,
        input_shape,
        names,
        HarnessConfig(threads=threads, rounds=rounds, runs=runs),
        progress,
    )
    return dict(zip(chosen, np.asarray(result.latency_ms, dtype=np.float64).tolist(), strict=True))
