"""An ONNX file's graph as its executed-layer list (``client_sdk.spaces.layers.Layer``).

The ONNX counterpart of ``client_sdk.measure.layers`` (which traces a torch module): the
same layer rows, so networks you only have as ONNX files rank in the same network space as
torch modules (``client_sdk.measure.networks`` accepts both)::

    from client_sdk.measure.onnx_layers import onnx_layers, named_onnx_layers
    from client_sdk.spaces.layers import descriptor_sum

    rows = onnx_layers("resnet18.onnx")              # a path or an onnx.ModelProto
    d = descriptor_sum(rows)                         # (6,) BASE_NAMES descriptors
    named_onnx_layers(model, input_shape=(1, 3, 160, 160))   # [(node name, Layer), ...]

    network_space(oracle, {"r18": "resnet18.onnx", "mine": my_module}, (1, 3, 224, 224))

Needs only ``onnx`` (the ``[measure]`` extra; no ONNX Runtime): shapes come from
``onnx.shape_inference`` (value_info, initializers), so the graph must have static shapes
once its input shape is fixed (``input_shape`` overrides a symbolic or different input).
External weight data is not loaded (only the tensors' dims are read).

Mapping (node by node, in graph order; the torch tracer's conventions and fusion rules):

* ``Conv`` (2-D, constant weight) -> ``conv`` (groups, kernel area, bias, areas from the
  inferred shapes, so strides / padding / dilation need no special case). A
  ``BatchNormalization`` on a conv's raw output folds into it (``bn=True``).
* ``Gemm`` with a constant weight -> ``linear``; ``MatMul`` by a constant 2-D weight ->
  ``linear``, or a 1x1 ``conv`` over the positions of an ``(N, L, C)`` input, and an ``Add``
  of a constant ``C_out`` vector on its raw output is its bias.
* A ``BatchNormalization`` on a linear's raw output folds into it (``extra_weights`` 2 x C,
  as the torch tracer does); one elsewhere,
  ``LayerNormalization``, ``InstanceNormalization``, ``GroupNormalization`` -> ``eltwise``
  with ``reads=1`` and the affine parameters as ``extra_weights`` (BN: 2 x C).
* Activations (``Relu``, ``Clip``, ``HardSwish``, ``HardSigmoid``, ``Sigmoid``, ``Tanh``,
  ``LeakyRelu``, ``Elu``, ``Gelu``, ...) fuse into the layer that produced their input;
  other pointwise ops (``Add``, ``Mul``, ``Div``, ``Erf``, ...) fuse only as the epilogue of
  the conv / linear executed last, else they are an ``eltwise`` whose ``reads`` is the
  number of distinct non-constant inputs (a residual ``Add``: 2, an SE gate ``Mul``: 2).
* ``MaxPool`` / ``AveragePool`` / ``LpPool`` -> ``pool`` with the kernel area;
  ``GlobalAveragePool`` / ``GlobalMaxPool`` and spatial ``Reduce*`` -> ``pool`` with kernel
  area 1 (chained ``ReduceMean`` over H then W merge into one layer).
* ``Concat``, ``Pad``, ``Resize``, ``Transpose``, ``Softmax``, ``DepthToSpace``, ... ->
  ``eltwise`` with ``reads=1`` over the output (a copy).
* Shape-only and view-like ops -> nothing: ``Identity``, ``Dropout``, ``Flatten``,
  ``Reshape``, ``Squeeze``, ``Unsqueeze``, ``Slice``, ``Gather``, ``Split``, ``Expand``,
  ``Cast``, and every node whose inputs are all constants (``Constant``, ``Shape``,
  ``Gather`` / ``Concat`` / ``Unsqueeze`` of shapes, ...).
* Anything else on an activation (``LSTM``, ``ConvTranspose``, a 1-D/3-D ``Conv``, a
  ``MatMul`` between two activations, an op of another domain such as
  ``com.microsoft``'s fused kernels) raises ``ValueError`` naming every such op type and
  node.

Against the torch tracer on the same module (``tests/unit/test_onnx_layers.py``):

* exported with BatchNorm kept (``torch.onnx.export(..., do_constant_folding=False)``):
  the same layer list (ResNet-, MobileNet-with-SE- and VGG-like test networks; the bundled
  OFA-MBv3 / ProxylessNAS networks), so all six descriptor columns are equal;
* exported with constant folding (eval mode, as ``onnx_runtime.export_onnx`` does), each
  ``Conv -> BatchNormalization`` is folded into the conv's weights plus a bias: the ONNX
  conv has ``bias=True, bn=False`` where torch has ``bn=True``. Only ``weights`` differs,
  lower by ``c_out`` per folded BN (``2 c_out`` when the torch conv had its own bias too):
  0.1-2% on the tiny test networks, 0.2-0.5% on the bundled spaces' networks, 0.04% on a
  ResNet-18; the other five columns are equal;
* ``Transpose`` counts as a copy where the torch tracer counts the ``reshape`` that has to
  copy: a channel shuffle is one layer of the same elements either way (equal descriptors;
  the layer's channels / area split follow the 5-D transposed tensor here), but
  ``x.flatten(2).transpose(1, 2)`` before a linear is one more ``eltwise`` here;
* the TorchScript exporter merges identical parameter-free ops on one input (two 3x3
  average-pool edges from the same NAS-Bench-201 cell node): the file runs, and this
  counts, one;
* ops the exporter decomposes (GELU below opset 20, GroupNorm below opset 18) are counted
  part by part: the same fused result after a conv / linear, extra ``eltwise`` layers
  elsewhere.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client_sdk._extras import require
from client_sdk.measure.layers import _pool_kernel
from client_sdk.spaces.layers import Layer

if TYPE_CHECKING:
    import onnx

__all__ = ["input_shape", "load", "named_onnx_layers", "onnx_layers"]


def _ops(names: str) -> frozenset[str]:
    return frozenset(names.split())


_ACTIVATIONS = _ops(
    "Relu Clip HardSwish HardSigmoid Sigmoid Tanh Elu Selu Celu LeakyRelu Mish Softplus "
    "Softsign ThresholdedRelu Shrink Gelu"
)
_POINTWISE = _ACTIVATIONS | _ops(
    "Add Sub Mul Div Neg Abs Exp Log Sqrt Reciprocal Erf Sign Pow Max Min Sum Mean Floor Ceil "
    "Round Where Mod Not And Or Xor Equal Less Greater LessOrEqual GreaterOrEqual IsNaN IsInf "
    "Sin Cos"
)
_NORMS = _ops("BatchNormalization LayerNormalization InstanceNormalization GroupNormalization")
_POOLS = frozenset({"MaxPool", "AveragePool", "LpPool"})
_GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
_REDUCTIONS = _ops(
    "ReduceMean ReduceMax ReduceMin ReduceSum ReduceProd ReduceLogSumExp ReduceL1 ReduceL2 "
    "ReduceSumSquare"
)
#: copies: an element-wise layer reading its input once
_COPIES = _ops(
    "Concat Pad Resize Upsample Transpose DepthToSpace SpaceToDepth Softmax LogSoftmax CumSum Tile"
)
#: views: no layer
_VIEWS = _ops(
    "Identity Dropout Flatten Reshape Squeeze Unsqueeze Slice Gather Split Expand Cast CastLike"
)
#: ops whose outputs are shapes, not activations, whatever their input
_SHAPE_OPS = frozenset({"Shape", "Size"})
_DOMAINS = ("", "ai.onnx")


def _onnx() -> Any:
    require("measure", "reading ONNX files (client_sdk.measure.onnx_layers)", "onnx")
    import onnx

    return onnx


def load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """``model`` itself, or the file at that path (without its external weight data)."""
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if not isinstance(model, str | os.PathLike):
        raise TypeError(f"expected an ONNX path or onnx.ModelProto, got {type(model).__name__}")
    return onnx.load(str(model), load_external_data=False)


def _dims(value_info: Any) -> tuple[int | None, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def _network_inputs(graph: Any) -> list[Any]:
    inits = {i.name for i in graph.initializer}
    return [v for v in graph.input if v.name not in inits]


def input_shape(model: str | Path | onnx.ModelProto) -> tuple[int | None, ...]:
    """The graph's (first) network input shape; ``None`` for a symbolic dimension."""
    inputs = _network_inputs(load(model).graph)
    if not inputs:
        raise ValueError("the ONNX graph has no input")
    return _dims(inputs[0]) or ()


def _infer(model: onnx.ModelProto, shape: tuple[int, ...] | None) -> onnx.ModelProto:
    onnx = _onnx()
    if shape is not None:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        inputs = _network_inputs(copy.graph)
        if len(inputs) != 1:
            raise ValueError(
                f"input_shape needs a graph with one input, this one has {len(inputs)}"
            )
        t = inputs[0].type.tensor_type
        t.shape.Clear()
        for v in shape:
            t.shape.dim.add().dim_value = int(v)
        del copy.graph.value_info[:]
        for out in copy.graph.output:
            out.type.tensor_type.ClearField("shape")
        model = copy
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


class _NoShape(ValueError):
    """A tensor without a static shape."""


@dataclass
class _Entry:
    """What the reader knows about an activation tensor (as the torch tracer's ``_Entry``)."""

    producer: int | None  # the layer that wrote it; None: the network input
    raw: bool  # the producer's own output (nothing fused on top of it yet)


class _Reader:
    """Turns the nodes of one graph into layers (see the module docstring)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.shapes: dict[str, tuple[int | None, ...]] = {}
        for v in (*graph.input, *graph.value_info, *graph.output):
            dims = _dims(v)
            if dims is not None:
                self.shapes[v.name] = dims
        for init in graph.initializer:
            self.shapes[init.name] = tuple(init.dims)
        self.graph = graph
        self.node = ""  # the node being read (layers and errors name it)
        self.layers: list[Layer] = []
        self.where: list[str] = []
        self.problems: list[str] = []
        self.tainted: set[str] = set()  # downstream of a refused node (shapes may be unknown)
        self.info: dict[str, _Entry] = {}
        self.head: dict[int, str] = {}  # layer -> its epilogue's last tensor
        self.matmuls: set[int] = set()  # layers from a MatMul (a following Add is the bias)
        inputs = _network_inputs(graph)
        if not inputs:
            raise ValueError("the ONNX graph has no input")
        first = self.shape(inputs[0].name, "the network input")
        self.batch = int(first[0]) if first else 1
        for v in inputs:
            self.track(v.name, None, raw=False)

    # ---------------------------------------------------------------- tensors
    def shape(self, name: str, what: str = "") -> tuple[int, ...]:
        dims = self.shapes.get(name)
        if dims is None or any(d is None for d in dims):
            raise _NoShape(
                f"tensor '{name}' ({what or f'in node {self.node!r}'}) has no static shape "
                f"({dims}): export with a fixed input shape or pass input_shape"
            )
        return tuple(int(d) for d in dims)  # type: ignore[arg-type]

    def track(self, name: str, producer: int | None, raw: bool) -> None:
        self.info[name] = _Entry(producer, raw)
        if producer is not None and (raw or producer in self.head):
            self.head[producer] = name

    def per_sample(self, name: str) -> tuple[int, int]:
        """(channels, area) of one sample: dim 1 is channels, the rest area."""
        s = self.shape(name)
        n = math.prod(s)
        if s and s[0] == self.batch and self.batch > 0:
            n //= self.batch
        c = s[1] if len(s) >= 2 else n
        return c, (n // c if c else 1)

    def add(self, layer: Layer) -> int:
        self.layers.append(layer)
        self.where.append(self.node)
        return len(self.layers) - 1

    def eltwise(self, out: str, reads: int, extra_weights: int = 0) -> None:
        c, area = self.per_sample(out)
        self.track(
            out,
            self.add(Layer("eltwise", c, c, area, area, reads=reads, extra_weights=extra_weights)),
            raw=True,
        )

    def refuse(self, node: Any, why: str = "") -> None:
        self.problems.append(f"{node.op_type} (node '{self.node}'{': ' + why if why else ''})")
        for out in node.output:  # keep reading, to name every problem at once
            if out:
                self.track(out, None, raw=False)
                self.tainted.add(out)

    # -------------------------------------------------------------- dispatch
    def read(self) -> None:
        subgraph = (_onnx().AttributeProto.GRAPH, _onnx().AttributeProto.GRAPHS)
        for i, node in enumerate(self.graph.node):
            self.node = node.name or f"{node.op_type}_{i}"
            inputs = [x for x in node.input if x]
            acts = [x for x in inputs if x in self.info]
            if not acts or node.op_type in _SHAPE_OPS:
                continue  # constants and shape arithmetic: not executed layers
            if node.domain not in _DOMAINS:
                self.refuse(node, f"domain '{node.domain}'")
            elif any(a.type in subgraph for a in node.attribute):
                self.refuse(node, "control flow (subgraphs)")
            elif any(a in self.tainted for a in acts):
                # still name what is refused without shapes (a MatMul of activations)
                with contextlib.suppress(_NoShape):
                    self.dispatch(node, inputs, acts)
                self.tainted.update(o for o in node.output if o)
                for o in node.output:
                    if o and o not in self.info:
                        self.track(o, None, raw=False)
            else:
                self.dispatch(node, inputs, acts)

    def dispatch(self, node: Any, inputs: list[str], acts: list[str]) -> None:
        op, out = node.op_type, node.output[0]
        ex = self.info[acts[0]]
        if op == "Conv":
            self.conv(node, inputs)
        elif op in ("Gemm", "MatMul"):
            self.linear(node, inputs)
        elif op in _NORMS:
            self.norm(node, inputs, ex)
        elif op in _POOLS or op in _GLOBAL_POOLS or op in _REDUCTIONS:
            self.pool(node, acts[0], ex)
        elif op in _COPIES:
            self.eltwise(out, reads=1)
        elif op in _VIEWS:
            if inputs[0] not in self.info:
                return self.refuse(node, "a lookup into a constant (an embedding?)")
            for o in node.output[:1] if op == "Dropout" else node.output:
                self.track(o, ex.producer, ex.raw)
        elif op in _POINTWISE:
            if not self.bias_add(node, inputs, acts):
                self.pointwise(op, acts, out)
        else:
            self.refuse(node)

    def conv(self, node: Any, inputs: list[str]) -> None:
        x, w = inputs[0], inputs[1]
        if x not in self.info or w in self.info:
            return self.refuse(node, "the weight is not a constant")
        ws, xs, os_ = self.shape(w), self.shape(x), self.shape(node.output[0])
        if len(ws) != 4:
            return self.refuse(node, f"{len(ws) - 2}-D convolution (only 2-D)")
        groups = int(next((a.i for a in node.attribute if a.name == "group"), 1))
        areas, k = (xs[-2] * xs[-1], os_[-2] * os_[-1]), ws[2] * ws[3]
        conv = Layer("conv", xs[1], ws[0], *areas, k, groups, bn=False, bias=len(inputs) > 2)
        self.track(node.output[0], self.add(conv), raw=True)

    def linear(self, node: Any, inputs: list[str]) -> None:
        attrs = {a.name: a.i for a in node.attribute if a.name in ("transA", "transB")}
        x, w = inputs[0], inputs[1]
        if x not in self.info or w in self.info or attrs.get("transA", 0):
            return self.refuse(
                node,
                "not an activation times a constant weight "
                "(attention-style products have no layer description)",
            )
        if node.op_type == "Gemm" and len(inputs) > 2 and inputs[2] in self.info:
            return self.refuse(node, "the bias is not a constant")
        ws = self.shape(w)
        if len(ws) != 2:
            return self.refuse(node, f"a {len(ws)}-D weight (a linear has a 2-D one)")
        c_in, c_out = (ws[1], ws[0]) if attrs.get("transB", 0) else ws
        c, area = self.per_sample(x)
        positions = c * area // c_in
        if node.op_type == "Gemm" or len(self.shape(x)) <= 2 or positions == 1:
            layer = Layer("linear", c_in, c_out, bias=node.op_type == "Gemm" and len(inputs) > 2)
        else:  # (N, L, C): a 1x1 convolution over the L positions
            layer = Layer("conv", c_in, c_out, positions, positions, 1, bn=False, bias=False)
        i = self.add(layer)
        if node.op_type == "MatMul":
            self.matmuls.add(i)
        self.track(node.output[0], i, raw=True)

    def bias_add(self, node: Any, inputs: list[str], acts: list[str]) -> bool:
        """``Add(MatMul(x, W), b)`` with a constant ``C_out`` vector: the linear's bias."""
        if node.op_type != "Add" or len(inputs) != 2 or len(acts) != 1:
            return False
        ex = self.info[acts[0]]
        p = ex.producer
        if p is None or not ex.raw or p not in self.matmuls or self.layers[p].bias:
            return False
        b = inputs[1] if inputs[0] == acts[0] else inputs[0]
        bs = self.shapes.get(b)
        if bs is None or math.prod(d or 0 for d in bs) != self.layers[p].c_out:
            return False
        self.layers[p] = replace(self.layers[p], bias=True)
        self.track(node.output[0], p, raw=True)
        return True

    def norm(self, node: Any, inputs: list[str], ex: _Entry) -> None:
        x, out = inputs[0], node.output[0]
        p = ex.producer
        if node.op_type == "BatchNormalization":
            prev = self.layers[p] if p is not None else None
            if ex.raw and prev is not None and prev.kind == "conv" and not prev.bn:
                self.layers[p] = replace(prev, bn=True)  # type: ignore[index]
                self.track(out, p, raw=False)
                return
            if ex.raw and prev is not None and prev.kind == "linear" and not prev.extra_weights:
                # folded into the linear, as the torch tracer does: 2 x C_out parameters
                self.layers[p] = replace(prev, extra_weights=2 * prev.c_out)  # type: ignore[index]
                self.track(out, p, raw=False)
                return
            xs = self.shape(x)
            params = 2 * (xs[1] if len(xs) >= 2 else xs[-1])  # folded scale + shift
        else:  # the affine scale and bias (inputs 1 and 2)
            params = sum(math.prod(self.shape(t)) for t in inputs[1:3])
        self.eltwise(out, reads=1, extra_weights=params)

    def pool(self, node: Any, x: str, ex: _Entry) -> None:
        op, out = node.op_type, node.output[0]
        c_in, a_in = self.per_sample(x)
        xs, ys = self.shape(x), self.shape(out)
        if op in _REDUCTIONS and len(xs) >= 3 and len(ys) >= 2 and ys[:2] == xs[:2]:
            c_out, a_out = c_in, math.prod(ys[2:])  # a spatial reduction
        else:
            c_out, a_out = self.per_sample(out)
        p = ex.producer
        if op in _POOLS:
            k = math.prod(next(a.ints for a in node.attribute if a.name == "kernel_shape"))
        else:
            # merge a chained reduction (ReduceMean over W, then H) into the previous pool
            if (
                op in _REDUCTIONS
                and ex.raw
                and p is not None
                and p == len(self.layers) - 1
                and self.layers[p].kind == "pool"
            ):
                prev = self.layers.pop()
                self.where.pop()
                c_in, a_in = prev.c_in, prev.area_in
            k = _pool_kernel(c_in, a_in, c_out, a_out)
        self.track(out, self.add(Layer("pool", c_in, c_out, a_in, a_out, k)), raw=True)

    def pointwise(self, op: str, acts: list[str], out: str) -> None:
        """The torch tracer's rule: fused into the producing layer when every activation
        input comes from one layer with the output's shape and the op is an activation or
        extends the epilogue of the conv / linear executed last; else an element-wise layer
        reading each distinct non-constant input once."""
        entries = [self.info[a] for a in acts]
        producers = {e.producer for e in entries}
        ys = self.shape(out)
        if len(producers) == 1 and None not in producers and all(self.shape(a) == ys for a in acts):
            p = entries[0].producer
            assert p is not None
            epilogue = (
                p == len(self.layers) - 1
                and self.layers[p].kind in ("conv", "linear")
                and any(a == self.head.get(p) for a in acts)
            )
            if op in _ACTIVATIONS or epilogue:
                self.track(out, p, raw=False)
                return
        self.eltwise(out, reads=len(set(acts)))


def _read(model: str | Path | onnx.ModelProto, input_shape: tuple[int, ...] | None) -> _Reader:
    proto = _infer(load(model), None if input_shape is None else tuple(input_shape))
    reader = _Reader(proto)
    reader.read()
    if reader.problems:
        graph = proto.graph.name or "graph"
        raise ValueError(
            f"unsupported ONNX op(s) in '{graph}': {', '.join(reader.problems)}; "
            "they have no layer description (see client_sdk.measure.onnx_layers)"
        )
    return reader


def onnx_layers(
    model: str | Path | onnx.ModelProto, input_shape: tuple[int, ...] | None = None
) -> list[Layer]:
    """The executed layers of the ONNX graph ``model`` (a path or an ``onnx.ModelProto``) at
    its input shape (or ``input_shape``, batch included); per-sample counts as the torch
    tracer's. Raises ``ValueError`` naming every unsupported op and its node."""
    return _read(model, input_shape).layers


def named_onnx_layers(
    model: str | Path | onnx.ModelProto, input_shape: tuple[int, ...] | None = None
) -> list[tuple[str, Layer]]:
    """``onnx_layers`` with the name of the node each layer comes from (a conv's, for a
    conv with its folded BatchNormalization and activation)."""
    reader = _read(model, input_shape)
    return list(zip(reader.where, reader.layers, strict=True))
