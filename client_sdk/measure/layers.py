"""Any torch network as its executed-layer list (``client_sdk.spaces.layers.Layer``).

``layers(model, input_shape)`` runs ONE forward pass on zeros of ``input_shape`` (batch
included) under ``torch.no_grad()`` with the model in eval mode, and records every executed
tensor operation through a ``torch.overrides.TorchFunctionMode`` (it sees ``F.conv2d`` inside
``nn.Conv2d`` as well as the functional ops written in ``forward``: ``+`` for residuals,
``*`` for squeeze-excite gates, ``torch.cat``, channel shuffles, ``x.mean(...)``). Forward
pre-hooks on every module give each layer its module path and reject the modules it cannot
describe. The model is left as it was (training flags restored, hooks removed).

Mapping (the conventions of ``client_sdk.spaces.descriptors``, so a device fit on a bundled
space's descriptors can rank traced networks):

* ``conv2d`` -> ``conv`` (groups, bias, kernel area, areas from the actual tensors: stride,
  padding and dilation need no special case). A ``batch_norm`` whose input is a
  convolution's raw output folds into it (``bn=True``: 2 parameters per channel).
* ``linear`` -> ``linear``; on an input with extra dimensions (tokens, ``(N, L, C)``) it is
  a 1x1 ``conv`` over ``L`` positions (``bn=False``), which ``Layer`` counts exactly. A
  ``batch_norm`` right after a linear folds into it (its 2 x C parameters kept as
  ``NormLayer.extra_weights``).
* A standalone normalisation (BN not after a conv/linear, LayerNorm, GroupNorm,
  InstanceNorm) is an ``eltwise`` with ``reads=1`` whose affine parameters (BN: 2 x C) are
  counted as weights (``NormLayer``: ``Layer`` has no weights for element-wise layers).
* Activation functions (ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, GELU, Sigmoid, Tanh,
  ...) whose input comes from an executed layer fuse into it (no layer): after a conv /
  linear, and also after an element-wise add or a standalone BN (the NB-201 cells'
  pre-activation ReLUs, ResNet's ``relu(out + identity)``). Other pointwise ops (``+ - * /``
  with scalars, or among tensors of that one layer, same shape) fuse only as the epilogue of
  the conv / linear executed last, extending its chain (h-swish written as
  ``x * relu6(x + 3) / 6``, h-sigmoid). A pointwise op on the network input, or one not
  fusable by these rules, is an ``eltwise`` reading each distinct input tensor once.
* Pointwise ops combining tensors of different producers (a residual add, an SE gate
  ``x * s`` broadcast) are an ``eltwise`` with ``reads`` = number of distinct input tensors.
* ``max_pool2d`` / ``avg_pool2d`` -> ``pool`` with the kernel area; adaptive pooling ->
  ``pool`` with kernel area ``area_in / area_out``, except GLOBAL pooling (output area 1,
  also ``x.mean((2, 3))`` or ``x.mean(3).mean(2)``, merged into one layer) whose kernel area
  is 1 as in ``spaces.layers.global_pool`` and the bundled descriptors (element-wise work =
  C, not C x H x W).
* ``cat`` / ``stack``, ``pad``, ``interpolate`` and any view-like op that has to copy (the
  ``reshape`` of a transposed tensor in a channel shuffle) -> ``eltwise`` with ``reads=1``
  over the output; views (``view``, ``transpose``, ``flatten`` of a contiguous tensor,
  slicing), ``Dropout``, ``Identity``, ``Flatten`` -> nothing.
* Unsupported: modules that hold parameters directly and are not Conv2d / Linear /
  BatchNorm1d/2d / LayerNorm / GroupNorm / InstanceNorm (LSTM, Conv1d/3d, ConvTranspose,
  MultiheadAttention, Embedding, PReLU, a custom module's own ``nn.Parameter``) raise
  ``ValueError`` naming the module path and type as soon as they execute; so do the ops
  this list has no row for (``matmul`` / ``bmm`` between activations, ``conv1d``, ...).
  Other unknown ops returning a fresh tensor count as element-wise layers, with a warning.
  In-place writes into slices (``x[:, :2] = y``) are not counted.

Against the bundled descriptors (``benchmarks/networks_onboarding.py --agreement N``): FBNet
and OFA-MBv3 builders trace to the analytic six columns exactly. NAS-Bench-201 agrees
exactly on MACs and weights; traffic / kernels / element-wise differ slightly because (a) a
``none`` edge (``x.mul(0)``) right after a conv edge or the stem is fused into that conv's
epilogue here but is a kernel there; (b) the reduction block's 2x2 average pool counts 4
inputs per output here (``Layer.row``'s pool rule) but 1 there; (c) ``x + x`` (two skip
edges from one node) reads one tensor here, two there.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from client_sdk.spaces.layers import Layer, descriptor_sum

__all__ = ["NormLayer", "layers", "named_layers", "network_descriptors"]


#: a standalone normalisation or a BN folded into a linear: ``Layer.extra_weights`` carries
#: their parameters (the name is kept for the tracer's readability)
NormLayer = Layer


#: modules allowed to hold parameters directly (their ops are described below)
SUPPORTED_PARAM_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d,
)

_UNSUPPORTED_OPS = frozenset({
    "conv1d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "matmul", "rmatmul", "mm", "bmm", "baddbmm", "addmm", "addbmm", "einsum", "bilinear",
    "embedding", "embedding_bag", "lstm", "gru", "rnn_tanh", "rnn_relu",
    "scaled_dot_product_attention", "multi_head_attention_forward", "tensordot", "kron",
})
_NORMS = frozenset({"batch_norm", "layer_norm", "group_norm", "instance_norm"})
_POOLS = frozenset({"max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
                    "max_pool2d_with_indices", "lp_pool2d"})
_ADAPTIVE_POOLS = frozenset({"adaptive_avg_pool1d", "adaptive_avg_pool2d",
                             "adaptive_max_pool1d", "adaptive_max_pool2d",
                             "adaptive_max_pool2d_with_indices"})
_REDUCTIONS = frozenset({"mean", "sum", "amax", "amin", "max", "min", "std", "var",
                         "logsumexp", "nanmean", "prod"})
_CONCATS = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack"})
_COPIES = frozenset({"pad", "interpolate", "upsample", "upsample_nearest",
                     "upsample_bilinear", "pixel_shuffle", "pixel_unshuffle", "clone",
                     "roll", "flip", "channel_shuffle", "native_channel_shuffle",
                     "softmax", "log_softmax", "cumsum"})
#: views when the output shares the input's storage, else a copy (an element-wise layer)
_VIEWS = frozenset({"view", "view_as", "reshape", "reshape_as", "flatten", "unflatten",
                    "transpose", "permute", "squeeze", "unsqueeze", "expand", "expand_as",
                    "contiguous", "getitem", "narrow", "select", "chunk", "split",
                    "tensor_split", "unbind", "t", "movedim", "swapaxes", "swapdims",
                    "get", "detach", "to", "float", "type", "type_as", "cpu", "as_strided",
                    "dropout", "dropout1d", "dropout2d", "dropout3d", "feature_dropout",
                    "alpha_dropout", "feature_alpha_dropout", "identity"})
#: tensors of the input's shape but not its values: constants, not activations
_CONSTANTS = frozenset({"zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
                        "randn_like", "new_zeros", "new_ones", "new_empty", "new_full",
                        "new_tensor", "size", "dim", "numel"})
#: activation functions: fused into whatever layer produced their input
_ACTIVATIONS = frozenset({
    "relu", "relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "gelu", "sigmoid",
    "tanh", "elu", "selu", "celu", "leaky_relu", "mish", "softplus", "softsign",
    "tanhshrink", "hardshrink", "softshrink", "logsigmoid", "threshold",
})
#: other pointwise ops: fused only into a convolution's / linear's epilogue
_POINTWISE = _ACTIVATIONS | frozenset({
    "glu", "add", "sub", "rsub", "mul", "div", "truediv", "true_divide", "floordiv", "neg",
    "pos", "abs", "exp", "log", "sqrt", "rsqrt", "square", "reciprocal", "erf", "sign",
    "pow", "rpow", "clamp", "clip", "clamp_min", "clamp_max", "maximum", "minimum",
    "floor", "ceil", "round", "where", "lerp", "addcmul", "addcdiv", "masked_fill",
    "nan_to_num",
})
_DUNDER_ALIASES = {"iadd": "add", "radd": "add", "isub": "sub", "imul": "mul",
                   "rmul": "mul", "itruediv": "div", "rtruediv": "div", "idiv": "div",
                   "rdiv": "div", "truediv": "div", "true_divide": "div", "ipow": "pow",
                   "concat": "cat", "concatenate": "cat", "clip": "clamp"}


def _op_name(func: Any) -> str:
    """``F.relu`` / ``torch.relu_`` / ``Tensor.__iadd__`` -> ``relu`` / ``relu`` / ``add``."""
    name = getattr(func, "__name__", "") or ""
    name = name.strip("_")
    return _DUNDER_ALIASES.get(name, name)


def _arg(args: tuple, kwargs: dict, pos: int, key: str, default: Any = None) -> Any:
    if key in kwargs:
        return kwargs[key]
    return args[pos] if len(args) > pos else default


def _storage(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # a tensor without storage
        return -1


@dataclass
class _Entry:
    """What the tracer knows about a live activation tensor."""

    ref: weakref.ref
    producer: int | None  # index of the layer that wrote it; None: the network input
    raw: bool  # the producer's own output (nothing fused on top of it yet)


class _Tracer(TorchFunctionMode):
    """Turns the torch ops of one forward pass into layers (see the module docstring)."""

    def __init__(self, batch: int, path: list[str]) -> None:
        super().__init__()
        self.batch = batch
        self.path = path  # module path stack, kept by the forward hooks
        self.layers: list[Layer] = []
        self.where: list[str] = []
        self.unknown: set[str] = set()
        self._info: dict[int, _Entry] = {}
        self._head: dict[int, int] = {}  # layer -> id of the last tensor of its epilogue

    # ---------------------------------------------------------------- tensors
    def track(self, t: torch.Tensor, producer: int | None, raw: bool) -> None:
        key = id(t)
        info = self._info

        def forget(ref: weakref.ref, key: int = key) -> None:
            entry = info.get(key)
            if entry is not None and entry.ref is ref:
                del info[key]

        self._info[key] = _Entry(weakref.ref(t, forget), producer, raw)
        if producer is not None and (raw or producer in self._head):
            self._head[producer] = key

    def lookup(self, t: torch.Tensor) -> _Entry | None:
        entry = self._info.get(id(t))
        return entry if entry is not None and entry.ref() is t else None

    def _per_sample(self, t: torch.Tensor) -> tuple[int, int]:
        """(channels, area) of one sample of ``t``: dim 1 is channels, the rest area."""
        n = t.numel()
        if t.dim() >= 1 and t.shape[0] == self.batch and self.batch > 0:
            n //= self.batch
        c = int(t.shape[1]) if t.dim() >= 2 else n
        return c, (n // c if c else 1)

    def _add(self, layer: Layer) -> int:
        self.layers.append(layer)
        self.where.append(self.path[-1] if self.path else "")
        return len(self.layers) - 1

    def _eltwise(self, out: torch.Tensor, reads: int, extra_weights: int = 0) -> int:
        c, area = self._per_sample(out)
        if extra_weights:
            return self._add(NormLayer("eltwise", c, c, area, area, reads=reads,
                                       extra_weights=extra_weights))
        return self._add(Layer("eltwise", c, c, area, area, reads=reads))

    def _where(self) -> str:
        return self.path[-1] if self.path and self.path[-1] else "(root)"

    # -------------------------------------------------------------- dispatch
    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = _op_name(func)
        if name in _UNSUPPORTED_OPS:
            acts = [t for t in tree_flatten((args, kwargs))[0]
                    if isinstance(t, torch.Tensor) and self.lookup(t) is not None]
            if acts:
                raise ValueError(f"unsupported op '{name}' in module '{self._where()}': "
                                 "it has no layer description (see client_sdk.measure.layers)")
        before = [(t, self.lookup(t)) for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)]
        out = func(*args, **kwargs)
        acts = [(t, e) for t, e in before if e is not None]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if acts and outs and name not in _CONSTANTS:
            self._record(name, args, kwargs, acts, outs)
        return out

    def _record(self, name: str, args: tuple, kwargs: dict,
                acts: list[tuple[torch.Tensor, _Entry]], outs: list[torch.Tensor]) -> None:
        x, ex = acts[0]
        out = outs[0]
        if name == "conv2d":
            weight = _arg(args, kwargs, 1, "weight")
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            bias = _arg(args, kwargs, 2, "bias") is not None
            k = int(weight.shape[2] * weight.shape[3])
            i = self._add(Layer("conv", int(x.shape[1]), int(weight.shape[0]),
                                int(x.shape[-2] * x.shape[-1]),
                                int(out.shape[-2] * out.shape[-1]), k, groups,
                                bn=False, bias=bias))
            self.track(out, i, raw=True)
        elif name == "linear":
            weight = _arg(args, kwargs, 1, "weight")
            bias = _arg(args, kwargs, 2, "bias") is not None
            c_out, c_in = int(weight.shape[0]), int(weight.shape[1])
            positions = self._per_sample(x)[0] * self._per_sample(x)[1] // c_in
            if x.dim() <= 2 or positions == 1:
                layer = Layer("linear", c_in, c_out, bias=bias)
            else:  # (N, L, C): a 1x1 convolution over the L positions
                layer = Layer("conv", c_in, c_out, positions, positions, 1, bn=False,
                              bias=bias)
            self.track(out, self._add(layer), raw=True)
        elif name in _NORMS:
            self._norm(name, args, kwargs, x, ex, out)
        elif name in _POOLS or name in _ADAPTIVE_POOLS or (
                name in _REDUCTIONS and not self._binary_minmax(name, args, kwargs)):
            self._pool(name, args, kwargs, x, ex, out)
        elif name in _CONCATS or name in _COPIES:
            if name in _COPIES and _storage(out) == _storage(x):
                self._alias(outs, ex)
            else:
                self.track(out, self._eltwise(out, reads=1), raw=True)
        elif name in _POINTWISE or name in _REDUCTIONS:
            self._pointwise(name, acts, out)
        elif all(_storage(o) == _storage(x) for o in outs):  # a view (any op name)
            self._alias(outs, ex)
        elif name in _VIEWS:  # a view-like op that had to copy (reshape of a transpose)
            for o in outs:
                self.track(o, self._eltwise(o, reads=1), raw=True)
        else:
            self.unknown.add(name)
            reads = len({id(t) for t, _ in acts})
            for o in outs:
                self.track(o, self._eltwise(o, reads=reads), raw=True)

    @staticmethod
    def _binary_minmax(name: str, args: tuple, kwargs: dict) -> bool:
        """``torch.max(a, b)`` (element-wise), not ``x.max(dim)`` (a reduction)."""
        return name in ("max", "min") and isinstance(_arg(args, kwargs, 1, "other"),
                                                     torch.Tensor)

    def _alias(self, outs: list[torch.Tensor], ex: _Entry) -> None:
        for o in outs:
            self.track(o, ex.producer, ex.raw)

    def _norm(self, name: str, args: tuple, kwargs: dict, x: torch.Tensor, ex: _Entry,
              out: torch.Tensor) -> None:
        c = int(x.shape[1]) if x.dim() >= 2 else int(x.shape[-1])
        if name == "layer_norm":
            c = int(x.shape[-1])
        p = ex.producer
        prev = self.layers[p] if p is not None else None
        if name == "batch_norm" and ex.raw and prev is not None:
            if prev.kind == "conv" and not prev.bn:
                self.layers[p] = replace(prev, bn=True)
                self.track(out, p, raw=False)
                return
            if prev.kind == "linear" and not prev.extra_weights:  # not folded yet
                self.layers[p] = replace(prev, extra_weights=2 * prev.c_out)
                self.track(out, p, raw=False)
                return
        if name == "batch_norm":
            params = 2 * c  # folded scale + shift, as for a conv's BN
        else:  # affine weight and bias (positions: layer_norm / group_norm 2, 3; instance 3, 4)
            first = 3 if name == "instance_norm" else 2
            params = sum(w.numel() for w in (_arg(args, kwargs, first, "weight"),
                                             _arg(args, kwargs, first + 1, "bias"))
                         if isinstance(w, torch.Tensor))
        self.track(out, self._eltwise(out, reads=1, extra_weights=params), raw=True)

    def _pool(self, name: str, args: tuple, kwargs: dict, x: torch.Tensor, ex: _Entry,
              out: torch.Tensor) -> None:
        c_in, a_in = self._per_sample(x)
        if name in _REDUCTIONS and x.dim() >= 3 and out.dim() >= 2 and \
                out.shape[:2] == x.shape[:2]:
            c_out, a_out = c_in, math.prod(out.shape[2:])  # spatial reduction
        else:
            c_out, a_out = self._per_sample(out)
        p = ex.producer
        if name in _POOLS:
            kernel = _arg(args, kwargs, 1, "kernel_size")
            ks = [int(kernel)] * max(x.dim() - 2, 1) if isinstance(kernel, int) else kernel
            k = math.prod(int(v) for v in ks)
        else:
            # merge a chained reduction (``x.mean(3).mean(2)``) into the previous pool
            if (name in _REDUCTIONS and ex.raw and p is not None and p == len(self.layers) - 1
                    and self.layers[p].kind == "pool"):
                prev = self.layers[p]
                c_in, a_in = prev.c_in, prev.area_in
                self.layers.pop()
                self.where.pop()
            k = _pool_kernel(c_in, a_in, c_out, a_out)
        i = self._add(Layer("pool", c_in, c_out, a_in, a_out, k))
        self.track(out, i, raw=True)

    def _pointwise(self, name: str, acts: list[tuple[torch.Tensor, _Entry]],
                   out: torch.Tensor) -> None:
        """Fused into the producing layer (no layer) when every activation input comes from
        one layer and keeps the output's shape, and either the op is an activation function
        or that layer is the conv / linear executed last and the op extends its epilogue
        chain (reads the chain's last tensor: h-swish written as ``x * relu6(x + 3) / 6``);
        else an element-wise layer reading each distinct input tensor once (NB-201's
        ``none`` edge ``x.mul(0)`` on an earlier node)."""
        producers = {e.producer for _, e in acts}
        if len(producers) == 1 and None not in producers and all(
                t.shape == out.shape for t, _ in acts):
            p = acts[0][1].producer
            assert p is not None
            epilogue = (p == len(self.layers) - 1 and self.layers[p].kind in ("conv", "linear")
                        and any(id(t) == self._head.get(p) for t, _ in acts))
            if name in _ACTIVATIONS or epilogue:
                self.track(out, p, raw=False)
                return
        reads = len({id(t) for t, _ in acts})
        self.track(out, self._eltwise(out, reads=reads), raw=True)


def _pool_kernel(c_in: int, a_in: int, c_out: int, a_out: int) -> int:
    """Kernel area of an adaptive pooling / reduction: 1 for global spatial pooling (the
    layer currency's convention, ``spaces.layers.global_pool``), else input / output."""
    if a_out == 1 and c_out == c_in:
        return 1
    return max(1, round(c_in * a_in / max(c_out * a_out, 1)))


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[Layer], list[str]]:
    if len(input_shape) < 2:
        raise ValueError(f"input_shape must include the batch, e.g. (1, 3, 224, 224), "
                         f"got {tuple(input_shape)}")
    try:
        first = next(iter(model.parameters()))
        dtype, device = first.dtype, first.device
    except StopIteration:
        dtype, device = torch.float32, torch.device("cpu")
    path: list[str] = []
    tracer = _Tracer(int(input_shape[0]), path)

    flags = {m: m.training for m in model.modules()}
    handles = []
    try:
        for name, module in model.named_modules():
            owns = next(iter(module.parameters(recurse=False)), None) is not None
            if owns and not isinstance(module, SUPPORTED_PARAM_MODULES):
                def refuse(mod: nn.Module, _inp: Any, name: str = name) -> None:
                    raise ValueError(
                        f"unsupported module '{name or '(root)'}' ({type(mod).__name__}): "
                        "it holds parameters and has no layer description (supported: "
                        f"{', '.join(t.__name__ for t in SUPPORTED_PARAM_MODULES)})")
                handles.append(module.register_forward_pre_hook(refuse))
            pre, post = _path_hooks(name, path)
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        model.eval()
        x = torch.zeros(tuple(int(v) for v in input_shape), dtype=dtype, device=device)
        with torch.no_grad(), tracer:
            tracer.track(x, None, raw=False)
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    if tracer.unknown:
        warnings.warn(f"ops without a layer description counted as element-wise layers: "
                      f"{', '.join(sorted(tracer.unknown))}", stacklevel=3)
    return tracer.layers, tracer.where


def _path_hooks(name: str, path: list[str]) -> tuple[Any, Any]:
    def pre(_mod: nn.Module, _inp: Any) -> None:
        path.append(name)

    def post(_mod: nn.Module, _inp: Any, _out: Any) -> None:
        if path:
            path.pop()

    return pre, post


def layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[Layer]:
    """The executed layers of one forward pass of ``model`` on zeros of ``input_shape``
    (batch included, e.g. ``(1, 3, 224, 224)``); per-sample counts (see the module
    docstring). Raises ``ValueError`` naming the module of an unsupported layer."""
    return _trace(model, input_shape)[0]


def named_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, Layer]]:
    """``layers`` with the path of the module each layer executed in (``''``: the root's
    own ``forward``)."""
    out, where = _trace(model, input_shape)
    return list(zip(where, out, strict=True))


def network_descriptors(model: nn.Module, input_shape: tuple[int, ...]) -> np.ndarray:
    """``(6,)`` descriptors (``spaces.descriptors.BASE_NAMES``) of a traced network."""
    return descriptor_sum(layers(model, input_shape))
