"""ONNX export of the spaces' torch networks and an ONNX Runtime builder for the harness.

``oracle device onboard --runtime onnxruntime`` times each architecture the way most users
deploy it: the torch network (``builders.build_model``) is exported once to ONNX with torch's
TorchScript exporter at a fixed opset (``OPSET``), checked with ``onnx.checker``, cached by
space + canonical architecture (``onnx_path``; the cache's size cap and eviction:
``client_sdk.measure.onnx_cache``), and timed with an
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
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from client_sdk._extras import require
from client_sdk.measure import onnx_cache as oc
from client_sdk.measure.builders import build_model, example_input
from client_sdk.measure.onnx_cache import default_cache_dir  # noqa: F401 (re-exported)
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
    """Where the architecture's exported file is cached: ``DIR/<space>/<key>.onnx`` (``DIR``:
    ``cache_dir``, else ``default_cache_dir()``)."""
    return oc.cache_root(cache_dir) / sp.name / f"{arch_key(sp, genes, batch_size, opset)}.onnx"


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


#: this process's live builders: their files are never evicted (``_in_use``)
_BUILDERS: weakref.WeakSet[OrtBuilder] = weakref.WeakSet()


def _in_use() -> set[Path]:
    return set().union(*(b.in_use for b in list(_BUILDERS)))


def _fetch(
    sp: SearchSpace,
    genes: np.ndarray,
    cache_dir: str | Path | None,
    batch_size: int,
    opset: int,
    limit: int | None,
    keep: set[Path],
) -> tuple[Path, bool, oc.PruneResult | None]:
    """``(path, was_cached, prune result)``: a hit touches the file (least recently used
    eviction); an export is followed by a prune of the cache to ``limit`` bytes that spares
    ``keep``, the new file and every live builder's files."""
    path = onnx_path(sp, genes, cache_dir, batch_size, opset)
    if path.is_file():
        oc.touch(path)
        return path, True, None
    export_arch(sp, genes, path, batch_size=batch_size, opset=opset)
    pruned = oc.prune(cache_dir, limit, keep | _in_use() | {path})
    return path, False, pruned


def cached_export(
    sp: SearchSpace,
    genes: np.ndarray,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 1,
    opset: int = OPSET,
    max_mb: float | None = None,
) -> tuple[Path, bool]:
    """The architecture's ONNX file, exported unless cached: ``(path, was_cached)``. A hit
    marks the file used; an export prunes the cache to ``max_mb`` MB (default
    ``$LATENCY_ORACLE_ONNX_CACHE_MAX_MB``, else ``onnx_cache.DEFAULT_MAX_MB``; 0 = unlimited), least
    recently used first, sparing the new file and the live ``OrtBuilder``s' files."""
    limit = oc.max_bytes(max_mb)
    path, hit, _ = _fetch(sp, genes, cache_dir, batch_size, opset, limit, set())
    return path, hit


def session_options(
    threads: int | None, graph_optimization: str = "all", flush_denormal: bool = False
) -> ort.SessionOptions:
    """CPU session options: ``intra_op_num_threads = threads`` (None: torch's current
    count, what the torch harness would use), one inter-op thread, sequential execution,
    and intra-op threads that sleep instead of spinning when idle: the harness keeps one
    session per architecture alive and times them in turn, and the idle sessions' spinning
    threads took the cores from the one being timed (FBNet, 40 archs measured twice at 2
    threads on this 2-core machine: test-retest Spearman -0.15 spinning, 0.76-0.81 not;
    1 thread, which starts no intra-op thread: 0.93 / 0.90, the same within noise).
    ``flush_denormal``: ``session.set_denormal_as_zero = 1`` (flush-to-zero and
    denormals-are-zero on the session's threads)."""
    if graph_optimization not in GRAPH_OPTIMIZATION:
        raise ValueError(
            f"unknown graph optimisation '{graph_optimization}' (have {tuple(GRAPH_OPTIMIZATION)})"
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if flush_denormal:
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[graph_optimization]
    )
    so.log_severity_level = 3  # errors only
    return so


def describe(
    threads: int, graph_optimization: str = "all", opset: int = OPSET, flush_denormal: bool = False
) -> str:
    """The runtime settings, for the device contract's notes."""
    daz = ", session.set_denormal_as_zero" if flush_denormal else ""
    return (
        f"onnxruntime {runtime_version()} {PROVIDER}, intra_op_num_threads {threads}, "
        f"inter_op_num_threads 1, sequential, no intra-op spinning{daz}, graph optimisation "
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
    files and ``export_s`` the seconds spent exporting (never inside a timed run).

    The cache is kept under ``max_mb`` MB (None: ``$LATENCY_ORACLE_ONNX_CACHE_MAX_MB``, else
    ``onnx_cache.DEFAULT_MAX_MB``; 0 = unlimited): each export is followed by a prune that
    evicts the least recently used files, never one this builder opened or wrote
    (``in_use``); ``evicted``/``evicted_bytes`` count what went."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        opset: int = OPSET,
        max_mb: float | None = None,
        flush_denormal: bool = False,
    ) -> None:
        self.cache_dir = oc.cache_root(cache_dir)
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.opset = opset
        self.flush_denormal = flush_denormal
        #: one set of options for every session (a bad level fails here, not later)
        self.options = session_options(threads, graph_optimization, flush_denormal)
        self.exported = 0
        self.cached = 0
        self.export_s = 0.0
        #: the cache's cap (a bad value fails here, not after the first export)
        self.max_mb = oc.max_mb_setting(max_mb)
        self.limit = oc.max_bytes(self.max_mb)
        #: files opened or written by this builder: never evicted while it lives
        self.in_use: set[Path] = set()
        self.evicted = 0
        self.evicted_bytes = 0
        _BUILDERS.add(self)

    def __call__(
        self, sp: SearchSpace, genes: np.ndarray, batch_size: int, device: str
    ) -> tuple[OrtModel, np.ndarray]:
        if device != "cpu":
            raise ValueError(f"the onnxruntime harness runs on the CPU, not '{device}'")
        model = self._open(sp, genes, batch_size)
        x = example_input(sp, _canonical(sp, genes), batch_size=batch_size)
        return model, np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def _open(self, sp: SearchSpace, genes: np.ndarray, batch_size: int) -> OrtModel:
        """The session of the cached (or newly exported) file; a cached file that another
        process evicted between the lookup and the session's creation is exported again."""
        path = self._lookup(sp, genes, batch_size)
        try:
            return OrtModel(path, self.options)
        except Exception:
            if path.is_file():
                raise
        return OrtModel(self._lookup(sp, genes, batch_size), self.options)

    def _lookup(self, sp: SearchSpace, genes: np.ndarray, batch_size: int) -> Path:
        t0 = time.perf_counter()
        path, hit, pruned = _fetch(
            sp, genes, self.cache_dir, batch_size, self.opset, self.limit, self.in_use
        )
        self.in_use.add(path)
        if hit:
            self.cached += 1
        else:
            self.exported += 1
            self.export_s += time.perf_counter() - t0
        if pruned is not None:
            self.evicted += pruned.evicted
            self.evicted_bytes += pruned.freed
        return path

    def stats(self) -> dict[str, Any]:
        return {
            "onnx_exported": self.exported,
            "onnx_cached": self.cached,
            "onnx_export_s": round(self.export_s, 3),
            "onnx_cache": str(self.cache_dir),
            "onnx_evicted": self.evicted,
            "onnx_evicted_mb": round(self.evicted_bytes / oc.MB, 1),
            "onnx_cache_max_mb": self.max_mb,
        }
