"""ONNX export of the spaces' torch networks and an ONNX Runtime builder for the harness.

``oracle device onboard --runtime onnxruntime`` times each architecture the way most users
deploy it: the torch network (``builders.build_model``) is exported once to ONNX with torch's
TorchScript exporter at a fixed opset (``OPSET``), checked with ``onnx.checker``, cached by
space + canonical architecture (``onnx_path``), and timed with an
``onnxruntime.InferenceSession`` on the CPU execution provider. The export and the session's
creation happen when the harness builds its models, before any timed run, so the interleaved
rounds, the drift correction and the retest are exactly the torch harness's.

The same export writes the files of ``oracle device export`` (``client_sdk.measure.export``),
for devices the SDK cannot run on.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from client_sdk._extras import require
from client_sdk.measure.builders import build_model, example_input
from client_sdk.spaces import SearchSpace
from client_sdk.spaces.defined import DefinedSpace

require("measure", "the ONNX Runtime harness", "onnx", "onnxruntime")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

#: ONNX opset of every export (kept fixed: a cached file stays valid across runs)
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
#: ``--ort-graph-optimization`` names -> onnxruntime levels
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
PROVIDER = "CPUExecutionProvider"


def default_cache_dir() -> Path:
    """``$LATENCY_ORACLE_ONNX_CACHE``, else ``$XDG_CACHE_HOME/latency-oracle/onnx`` (default
    ``~/.cache/latency-oracle/onnx``)."""
    env = os.environ.get("LATENCY_ORACLE_ONNX_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "latency-oracle" / "onnx"


def runtime_version() -> str:
    return str(ort.__version__)


def _canonical(sp: SearchSpace, genes: np.ndarray) -> np.ndarray:
    return sp.validate(np.asarray(genes).reshape(1, -1))[0]


def arch_key(sp: SearchSpace, genes: np.ndarray, batch_size: int = 1, opset: int = OPSET) -> str:
    """Hash of what the exported file depends on: the space (a defined space's canonical
    definition, so two definitions under one name never share files), the canonical
    architecture string, the batch size, the opset and the exporting torch version."""
    ident = sp.definition.canonical_json() if isinstance(sp, DefinedSpace) else sp.name
    text = "\n".join(
        [
            ident,
            sp.format(_canonical(sp, genes)),
            f"batch={batch_size}",
            f"opset={opset}",
            f"torch={torch.__version__}",
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def onnx_path(
    sp: SearchSpace,
    genes: np.ndarray,
    cache_dir: str | Path | None = None,
    batch_size: int = 1,
    opset: int = OPSET,
) -> Path:
    """Where the architecture's exported file is cached: ``DIR/<space>/<key>.onnx``."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return root / sp.name / f"{arch_key(sp, genes, batch_size, opset)}.onnx"


def export_onnx(
    model: nn.Module,
    x: torch.Tensor,
    path: str | Path,
    *,
    opset: int = OPSET,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``model`` (eval mode) at input ``x`` to ``path`` (static shapes, input
    ``"input"``, output ``"output"``), add ``metadata`` to the file's properties, check it
    with ``onnx.checker`` (full check: shape inference too) and move it into place
    atomically (processes sharing a cache never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                (x,),
                str(tmp),
                opset_version=opset,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        if metadata:
            onnx.helper.set_model_props(proto, {str(k): str(v) for k, v in metadata.items()})
        proto.producer_name = "latency-oracle (torch.onnx TorchScript exporter)"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_arch(
    sp: SearchSpace,
    genes: np.ndarray,
    path: str | Path,
    *,
    batch_size: int = 1,
    opset: int = OPSET,
    model: nn.Module | None = None,
) -> Path:
    """Build (unless ``model`` is given) and export one architecture of ``sp`` to ``path``;
    the file's metadata names the space, the architecture, the batch and the input shape."""
    canon = _canonical(sp, genes)
    x = example_input(sp, canon, batch_size=batch_size)
    net = build_model(sp, canon) if model is None else model
    meta = {
        "latency_oracle.space": sp.name,
        "latency_oracle.arch": sp.format(canon),
        "latency_oracle.batch_size": str(batch_size),
        "latency_oracle.input_shape": "x".join(map(str, x.shape)),
        "latency_oracle.torch_version": torch.__version__,
    }
    return export_onnx(net, x, path, opset=opset, metadata=meta)


def cached_export(
    sp: SearchSpace,
    genes: np.ndarray,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 1,
    opset: int = OPSET,
) -> tuple[Path, bool]:
    """The architecture's ONNX file, exported unless cached: ``(path, was_cached)``."""
    path = onnx_path(sp, genes, cache_dir, batch_size, opset)
    if path.is_file():
        return path, True
    return export_arch(sp, genes, path, batch_size=batch_size, opset=opset), False


def session_options(threads: int | None, graph_optimization: str = "all") -> ort.SessionOptions:
    """CPU session options: ``intra_op_num_threads = threads`` (None: torch's current
    count, what the torch harness would use), one inter-op thread, sequential execution,
    and intra-op threads that sleep instead of spinning when idle: the harness keeps one
    session per architecture alive and times them in turn, and the idle sessions' spinning
    threads took the cores from the one being timed (FBNet, 40 archs measured twice at 2
    threads on this 2-core machine: test-retest Spearman -0.15 spinning, 0.76-0.81 not;
    1 thread, which starts no intra-op thread: 0.93 / 0.90, the same within noise)."""
    if graph_optimization not in GRAPH_OPTIMIZATION:
        raise ValueError(
            f"unknown graph optimisation '{graph_optimization}' (have {tuple(GRAPH_OPTIMIZATION)})"
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[graph_optimization]
    )
    so.log_severity_level = 3  # errors only
    return so


def describe(threads: int, graph_optimization: str = "all", opset: int = OPSET) -> str:
    """The runtime settings, for the device contract's notes."""
    return (
        f"onnxruntime {runtime_version()} {PROVIDER}, intra_op_num_threads {threads}, "
        f"inter_op_num_threads 1, sequential, no intra-op spinning, graph optimisation "
        f"{GRAPH_OPTIMIZATION[graph_optimization]}; ONNX opset {opset} exported by torch "
        f"{torch.__version__} (TorchScript exporter, constant folding)"
    )


class OrtModel:
    """A callable running one ``InferenceSession`` on a float32 numpy input."""

    def __init__(self, path: str | Path, options: ort.SessionOptions) -> None:
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=[PROVIDER])
        self._input = self.session.get_inputs()[0].name
        self._outputs = [self.session.get_outputs()[0].name]
        self._run = self.session.run

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(self._outputs, {self._input: x})[0]


class OrtBuilder:
    """Harness builder (``(space, genes, batch, device) -> (callable, input)``): export (or
    find in the cache) and open an ONNX Runtime session; ``exported``/``cached`` count the
    files and ``export_s`` the seconds spent exporting (never inside a timed run)."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        opset: int = OPSET,
    ) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.opset = opset
        #: one set of options for every session (a bad level fails here, not later)
        self.options = session_options(threads, graph_optimization)
        self.exported = 0
        self.cached = 0
        self.export_s = 0.0

    def __call__(
        self, sp: SearchSpace, genes: np.ndarray, batch_size: int, device: str
    ) -> tuple[OrtModel, np.ndarray]:
        if device != "cpu":
            raise ValueError(f"the onnxruntime harness runs on the CPU, not '{device}'")
        t0 = time.perf_counter()
        path, hit = cached_export(
            sp, genes, self.cache_dir, batch_size=batch_size, opset=self.opset
        )
        if hit:
            self.cached += 1
        else:
            self.exported += 1
            self.export_s += time.perf_counter() - t0
        model = OrtModel(path, self.options)
        x = example_input(sp, _canonical(sp, genes), batch_size=batch_size)
        return model, np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def stats(self) -> dict[str, Any]:
        return {
            "onnx_exported": self.exported,
            "onnx_cached": self.cached,
            "onnx_export_s": round(self.export_s, 3),
            "onnx_cache": str(self.cache_dir),
        }
