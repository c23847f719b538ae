"""``client_sdk.measure.onnx_layers``: ONNX graphs read into the torch tracer's layer rows.

The key property: a torch model exported to ONNX (opset 17, eval mode) reads back to the
torch tracer's layers. With BatchNorm kept in the graph (``do_constant_folding=False``) the
lists are equal; with the product's export (``onnx_runtime.export_onnx``: constant folding,
each Conv -> BatchNormalization folded into the conv's weights + a bias) only the
``weights`` column differs, by the documented, exactly predictable amount.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")  # onnx_runtime.export_onnx, the product's export helper

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from torch import nn  # noqa: E402

from client_sdk._extras import MissingExtra  # noqa: E402
from client_sdk.measure.builders import build_model  # noqa: E402
from client_sdk.measure.layers import layers  # noqa: E402
from client_sdk.measure.networks import (  # noqa: E402
    measure_networks,
    network_definition,
)
from client_sdk.measure.onnx_layers import input_shape, named_onnx_layers, onnx_layers  # noqa: E402
from client_sdk.measure.onnx_runtime import OPSET, export_onnx  # noqa: E402
from client_sdk.spaces import get_space  # noqa: E402
from client_sdk.spaces.descriptors import BASE_NAMES  # noqa: E402
from client_sdk.spaces.layers import Layer, descriptor_sum  # noqa: E402

SHAPE = (1, 3, 32, 32)
WEIGHTS = BASE_NAMES.index("weights")


def cbr(
    c_in: int,
    c_out: int,
    k: int = 3,
    s: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    mods: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return nn.Sequential(*mods, act()) if act is not None else nn.Sequential(*mods)


class Basic(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.a, self.b = cbr(c_in, c_out, 3, stride), cbr(c_out, c_out, act=None)
        self.down = (
            cbr(c_in, c_out, 1, stride, act=None) if stride > 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b(self.a(x)) + self.down(x))


class PreAct(nn.Module):
    """BN -> ReLU -> conv (standalone BatchNorms), conv with its own bias."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.relu(self.bn(x)))


def resnet_like() -> nn.Module:
    return nn.Sequential(
        cbr(3, 16, 3, 2),
        nn.MaxPool2d(3, 2, 1),
        Basic(16, 16, 1),
        Basic(16, 32, 2),
        PreAct(32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


class SE(nn.Module):
    def __init__(self, c: int, mean: bool) -> None:
        super().__init__()
        self.mean = mean
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.expand = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(3, keepdim=True).mean(2, keepdim=True) if self.mean else self.pool(x)
        s = self.expand(F.relu(self.reduce(s)))
        # h-sigmoid once as the module, once written out (an epilogue chain)
        return x * (F.hardsigmoid(s) if self.mean else F.relu6(s + 3.0) / 6.0)


class Inverted(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, expand: int, k: int, s: int, mean: bool, act: type[nn.Module]
    ) -> None:
        super().__init__()
        mid = c_in * expand
        self.body = nn.Sequential(
            cbr(c_in, mid, 1, act=act),
            cbr(mid, mid, k, s, mid, act),
            SE(mid, mean),
            cbr(mid, c_out, 1, act=None),
        )
        self.res = s == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.res else y


def mobilenet_like() -> nn.Module:
    return nn.Sequential(
        cbr(3, 16, 3, 2, act=nn.Hardswish),
        Inverted(16, 16, 3, 3, 1, True, nn.ReLU6),
        Inverted(16, 24, 4, 5, 2, False, nn.Hardswish),
        Inverted(24, 24, 3, 3, 1, False, nn.SiLU),
        cbr(24, 96, 1, act=nn.Hardswish),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(96, 64),
        nn.Hardswish(),
        nn.Dropout(0.2),
        nn.Linear(64, 10),
    )


def vgg_like() -> nn.Module:
    return nn.Sequential(
        cbr(3, 16),
        cbr(16, 16),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        cbr(32, 32),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(64, 10),
    )


MODELS = {"resnet": resnet_like, "mobilenet": mobilenet_like, "vgg": vgg_like}


def _init(model: nn.Module) -> nn.Module:
    """Random BN statistics (a fresh BN would export duplicate 0 / 1 initializers)."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model.eval()


def export_kept(model: nn.Module, path: Path, shape: tuple[int, ...] = SHAPE, **kw) -> Path:
    """torch.onnx.export with BatchNorm kept as BatchNormalization nodes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(shape),),
            str(path),
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=False,
            **kw,
        )
    return path


@pytest.fixture(scope="module", params=list(MODELS))
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, nn.Module, Path, Path]:
    name = request.param
    model = _init(MODELS[name]())
    d = tmp_path_factory.mktemp(name)
    folded = export_onnx(model, torch.zeros(SHAPE), d / "folded.onnx")
    return name, model, folded, export_kept(model, d / "kept.onnx")


def test_batchnorm_kept_reads_back_the_torch_layers(exported) -> None:
    _name, model, _folded, kept = exported
    want = layers(model, SHAPE)
    got = onnx_layers(kept)
    assert got == want
    np.testing.assert_array_equal(descriptor_sum(got), descriptor_sum(want))


def test_exporter_folded_batchnorm_changes_only_weights(exported) -> None:
    """The product's export folds each conv's BN into its weights and a bias: the ONNX conv
    is ``bias=True, bn=False`` where torch has ``bn=True``; so ``weights`` is lower by
    ``c_out`` per folded BN (``2 c_out`` if the conv had a bias of its own), every other
    column is equal. Stated tolerance: weights within 5% on these tiny networks."""
    name, model, folded, _kept = exported
    want = layers(model, SHAPE)
    got = onnx_layers(folded)
    assert got == [
        replace(x, bn=False, bias=True) if x.kind == "conv" and x.bn else x for x in want
    ]
    d_got, d_want = descriptor_sum(got), descriptor_sum(want)
    others = [i for i in range(len(BASE_NAMES)) if i != WEIGHTS]
    np.testing.assert_array_equal(d_got[others], d_want[others])
    lost = sum(x.c_out * (2 if x.bias else 1) for x in want if x.kind == "conv" and x.bn)
    assert d_want[WEIGHTS] - d_got[WEIGHTS] == lost > 0
    assert lost / d_want[WEIGHTS] < 0.05, (name, lost / d_want[WEIGHTS])


@pytest.mark.parametrize("space", ["ofa_mbv3", "fbnet"])
def test_bundled_space_networks(space: str, tmp_path: Path) -> None:
    """Real-size networks of the product's builders: equal descriptors with BN kept (FBNet's
    channel shuffle splits its copy's channels / area differently, same elements); with the
    product's export only ``weights`` differs, under 1%."""
    sp = get_space(space)
    genes = sp.sample(1, rng=4)[0]
    shape = (1, 3, 64, 64)  # any resolution (global pooling); small keeps the export quick
    model = _init(build_model(sp, genes))
    want = descriptor_sum(layers(model, shape))
    np.testing.assert_array_equal(
        descriptor_sum(onnx_layers(export_kept(model, tmp_path / "kept.onnx", shape))), want
    )
    got = descriptor_sum(onnx_layers(export_onnx(model, torch.zeros(shape), tmp_path / "f.onnx")))
    others = [i for i in range(len(BASE_NAMES)) if i != WEIGHTS]
    np.testing.assert_array_equal(got[others], want[others])
    assert 0 < 1 - got[WEIGHTS] / want[WEIGHTS] < 0.01


def test_named_layers_are_node_names(exported) -> None:
    _name, _model, folded, _kept = exported
    named = named_onnx_layers(folded)
    assert [x for _, x in named] == onnx_layers(folded)
    assert named[0][0] == "/0/0.0/Conv"  # the stem conv (with its folded BN and activation)
    assert input_shape(folded) == SHAPE


def test_symbolic_batch_needs_input_shape(tmp_path: Path) -> None:
    model = _init(resnet_like())
    path = export_kept(
        model, tmp_path / "dyn.onnx", dynamic_axes={"input": {0: "batch"}}, input_names=["input"]
    )
    assert input_shape(path) == (None, 3, 32, 32)
    with pytest.raises(ValueError, match=r"no static shape.*pass input_shape"):
        onnx_layers(path)
    # per-sample counts: the batch does not matter, the resolution does
    assert onnx_layers(path, (4, 3, 32, 32)) == layers(model, SHAPE)
    assert onnx_layers(path, (1, 3, 64, 64)) == layers(model, (1, 3, 64, 64))


def _graph(nodes: list, inits: list, shape: list[int], name: str = "g") -> onnx.ModelProto:
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, name, [inp], [out], inits)
    return helper.make_model(
        g, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    )


def _w(name: str, *dims: int) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, dims, np.zeros(dims).ravel().tolist())


def test_tokens_matmul_bias_layernorm_transpose() -> None:
    """A MatMul by a constant weight on (N, L, C) is a 1x1 conv over L positions and the
    following Add of a C_out vector its bias; LayerNormalization a norm layer; Transpose a
    copy; Shape arithmetic nothing."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1], name="tr"),  # (1, 49, 8)
        helper.make_node("MatMul", ["t", "w"], ["m"], name="fc"),
        helper.make_node("Add", ["b", "m"], ["a"], name="fc_bias"),
        helper.make_node("Relu", ["a"], ["g"], name="act"),
        helper.make_node("LayerNormalization", ["g", "s", "b"], ["n"], axis=-1, name="ln"),
        helper.make_node("Shape", ["n"], ["sh"], name="shape"),
        helper.make_node("Reshape", ["n", "sh"], ["y"], name="view"),
    ]
    model = _graph(nodes, [_w("w", 8, 16), _w("b", 16), _w("s", 16)], [1, 8, 49])
    assert onnx_layers(model) == [
        Layer("eltwise", 49, 49, 8, 8, reads=1),
        Layer("conv", 8, 16, 49, 49, 1, bn=False, bias=True),
        Layer("eltwise", 49, 49, 16, 16, reads=1, extra_weights=32),
    ]


def test_unsupported_ops_all_named() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("ConvTranspose", ["c", "wt"], ["u"], name="up"),
        helper.make_node("MatMul", ["u", "u"], ["att"], name="attention"),
        helper.make_node("FusedConv", ["att", "w"], ["f"], domain="com.microsoft", name="fc"),
        helper.make_node("Relu", ["f"], ["y"], name="relu"),
    ]
    model = _graph(nodes, [_w("w", 4, 4, 3, 3), _w("wt", 4, 4, 2, 2)], [1, 4, 8, 8], name="bad_net")
    with pytest.raises(ValueError) as err:
        onnx_layers(model)
    msg = str(err.value)
    assert msg.startswith("unsupported ONNX op(s) in 'bad_net': ")
    for part in (
        "ConvTranspose (node 'up')",
        "MatMul (node 'attention': not an activation",
        "FusedConv (node 'fc': domain 'com.microsoft')",
    ):
        assert part in msg, msg
    assert "Relu" not in msg and "'conv'" not in msg


def test_torch_attention_is_refused(tmp_path: Path) -> None:
    class Attention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ x.transpose(-1, -2)

    path = export_onnx(
        nn.Sequential(nn.Conv2d(3, 3, 1), Attention()),
        torch.zeros(1, 3, 4, 4),
        tmp_path / "att.onnx",
    )
    with pytest.raises(ValueError, match=re.escape("MatMul (node '/1/MatMul'")):
        onnx_layers(path)


def test_missing_onnx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    with pytest.raises(MissingExtra, match=re.escape("[measure] extra (missing: onnx)")):
        onnx_layers("model.onnx")


def test_network_definition_takes_onnx_files(exported, tmp_path: Path) -> None:
    _name, model, folded, kept = exported
    models = {
        "torch": model,
        "path": folded,
        "str": str(kept),
        "proto": onnx.load(str(kept)),
        "pair": (kept, (2, 3, 32, 32)),
    }
    d = network_definition(models, SHAPE, name="mixed")
    rows = {n["name"]: n["layers"] for n in d["networks"]}
    assert rows["str"] == rows["proto"] == rows["pair"] == rows["torch"]
    assert rows["path"] == [x.to_list() for x in onnx_layers(folded)]
    assert d["description"] == "5 networks (4 from ONNX)"
    with pytest.raises(TypeError, match=re.escape("nn.Module or an ONNX file")):
        network_definition({"x": "model.pt"}, SHAPE)
    with pytest.raises(TypeError, match=re.escape("['path'] are ONNX files")):
        measure_networks(models, SHAPE, names=["path"])
