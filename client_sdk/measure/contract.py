"""The device contract of a measurement made here: what was timed, how and on what hardware
(``DeviceContract`` fields), recorded with the device ``onboard`` registers."""

from __future__ import annotations

import platform
from typing import Any

import torch

from client_sdk.measure.builders import input_resolution
from client_sdk.measure.harness import HarnessConfig
from client_sdk.spaces import SearchSpace


def hardware_description(device: str = "cpu") -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()[:256]
    except OSError:
        pass
    return (platform.processor() or platform.machine() or "unknown")[:256]


def contract_fields(
    *,
    batch_size: int | None,
    threads: int | None,
    runtime: str = "",
    runtime_version: str = "",
    hardware: str = "",
    input_resolution: int = 0,
    notes: str = "",
) -> dict[str, Any]:
    """Every ``DeviceContract`` field, in the proto's order, of networks the SDK builds or
    exports (random weights, fp32) timed in milliseconds per inference; ``None`` and ``""``
    are the fields nobody filled yet."""
    return {
        "unit": "ms/inference",
        "batch_size": batch_size,
        "input_resolution": input_resolution,
        "threads": threads,
        "runtime": runtime,
        "runtime_version": runtime_version,
        "precision": "fp32",
        "hardware": hardware,
        "notes": notes,
    }


def process_state(config: HarnessConfig) -> str:
    """The timing's process settings (``pin_cpus``, ``flush_denormal``) for the notes."""
    pins = ",".join(map(str, config.pin_cpus)) if config.pin_cpus else ""
    return (
        (f"pinned to CPUs {pins}" if pins else "CPUs not pinned")
        + "; denormals "
        + ("flushed to zero" if config.flush_denormal else "not flushed")
    )


def build_contract(
    space: SearchSpace, *, threads: int, batch_size: int, device: str, config: HarnessConfig
) -> dict[str, Any]:
    res = input_resolution(space)
    per_arch = " input resolution per architecture (resolution gene);" if res is None else ""
    runtime, version = "torch", torch.__version__
    how = f"torch.inference_mode, backend {config.backend}"
    if config.runtime == "onnxruntime":
        from client_sdk.measure import onnx_runtime

        runtime, version = "onnxruntime", onnx_runtime.runtime_version()
        how = onnx_runtime.describe(
            threads, config.graph_optimization, flush_denormal=config.flush_denormal
        )
    notes = (
        f"measured by client_sdk.measure on {platform.node() or 'this machine'} ({device});"
        f"{per_arch} {config.statistic} of {config.rounds} interleaved rounds x {config.runs} "
        f"runs after {config.warmup} warm-up runs (drift-normalised per round), "
        f"{how}, {process_state(config)}, random weights"
    )
    return contract_fields(
        batch_size=batch_size,
        threads=threads,
        runtime=runtime,
        runtime_version=version,
        hardware=hardware_description(device),
        input_resolution=res or 0,
        notes=notes,
    )
