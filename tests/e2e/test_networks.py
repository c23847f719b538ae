"""Arbitrary torch networks over the wire: traced into a network space, registered with
RegisterSpace, a device registered from some of them, the others ranked."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.stats import spearmanr

from client_sdk import InvalidArchitecture, OracleClient
from client_sdk.errors import InvalidArgument
from client_sdk.spaces import get_space
from oracle_server.app import App
from tests.e2e.conftest import make_settings

torch = pytest.importorskip("torch")
nn = torch.nn
from client_sdk.measure.networks import (  # noqa: E402
    network_definition,
    network_space,
    rank_networks,
)

SHAPE = (1, 3, 32, 32)


def tiny_cnn(width: int, depth: int, kernel: int, dw: bool) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(3, width, 3, 2, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    for _ in range(depth):
        if dw:
            layers += [
                nn.Conv2d(width, width, kernel, 1, kernel // 2, groups=width, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 1, bias=False),
                nn.BatchNorm2d(width),
            ]
        else:
            layers += [
                nn.Conv2d(width, width, kernel, 1, kernel // 2, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


MODELS = {
    f"net_w{w}_d{d}_k{k}_{'dw' if dw else 'c'}": tiny_cnn(w, d, k, dw)
    for w in (8, 16, 32)
    for d in (1, 3)
    for k in (3, 5)
    for dw in (False, True)
}


def device_ms(space: str, names: list[str]) -> np.ndarray:
    sp = get_space(space)
    d = sp.descriptors(sp.parse_many(names))[:, :6]
    return 0.05 + 2e-7 * d[:, 0] + 1e-6 * d[:, 1] + 1e-6 * d[:, 3] + 0.01 * d[:, 4]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OracleClient]:
    settings = make_settings(tmp_path_factory.mktemp("nets"), spaces=("nasbench201",))
    app = App(settings).start(block_until_ready=True, timeout_s=120)
    try:
        with OracleClient(f"127.0.0.1:{app.port}", timeout_s=120) as c:
            yield c
    finally:
        app.stop(1.0)


def test_register_networks_and_rank_the_others(client: OracleClient) -> None:
    space = network_space(client, MODELS, SHAPE, name="tiny_nets")
    assert space == "tiny_nets"
    assert network_space(client, MODELS, SHAPE, name="tiny_nets") == space  # idempotent
    names = list(MODELS)
    rng = np.random.default_rng(0)
    measured = list(rng.choice(names, 10, replace=False))
    client.register_device("npu", space, (measured, device_ms(space, measured)))
    others = [n for n in names if n not in measured]
    ranked = rank_networks(client, space, "npu", others)
    assert list(ranked) == sorted(others, key=ranked.get)  # fastest first
    rho = spearmanr([ranked[n] for n in others], device_ms(space, others))[0]
    flops = get_space(space).flops(get_space(space).parse_many(others))
    rho_flops = spearmanr(flops, device_ms(space, others))[0]
    assert rho > 0.85 and rho >= rho_flops - 0.02, (rho, rho_flops)


def test_unknown_network_and_bad_definitions_are_named(client: OracleClient) -> None:
    space = network_space(client, MODELS, SHAPE, name="tiny_nets")
    with pytest.raises(InvalidArchitecture) as info:
        client.rank(space, [next(iter(MODELS)), "no_such_net"], ["npu"])
    assert info.value.index == 1
    d = network_definition({"a": MODELS[next(iter(MODELS))]}, SHAPE, name="bad_nets")
    d["networks"][0]["layers"][0][0] = "lstm"
    with pytest.raises(InvalidArgument) as err:
        client.register_space(d)
    assert err.value.field == "definition.networks[0].layers[0][0]"
    d = network_definition({"a": MODELS[next(iter(MODELS))]}, SHAPE, name="bad_nets")
    d["networks"].append(dict(d["networks"][0]))
    with pytest.raises(InvalidArgument, match="duplicate network name"):
        client.register_space(d)


def test_onnx_files_register_and_rank(client: OracleClient, tmp_path) -> None:
    """The same networks as ONNX files (the product's export: BN folded into the convs),
    given as Path / str / ModelProto: the network space registers, a device registers from
    10 of them and the others rank as well as from the torch modules."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import copy

    from client_sdk.measure.onnx_runtime import export_onnx

    paths = {
        n: export_onnx(copy.deepcopy(m), torch.zeros(SHAPE), tmp_path / f"{n}.onnx")
        for n, m in MODELS.items()
    }
    names = list(MODELS)
    files = {
        n: (p if i % 3 == 0 else str(p) if i % 3 == 1 else onnx.load(str(p)))
        for i, (n, p) in enumerate(paths.items())
    }
    space = network_space(client, files, name="tiny_nets_onnx")
    assert space == "tiny_nets_onnx"
    assert network_space(client, paths, name="tiny_nets_onnx") == space  # idempotent
    assert get_space(space).choices[0] == tuple(names)
    rng = np.random.default_rng(1)
    measured = list(rng.choice(names, 10, replace=False))
    client.register_device("npu_onnx", space, (measured, device_ms(space, measured)))
    others = [n for n in names if n not in measured]
    ranked = rank_networks(client, space, "npu_onnx", others)
    assert list(ranked) == sorted(others, key=ranked.get)
    rho = spearmanr([ranked[n] for n in others], device_ms(space, others))[0]
    assert rho > 0.85, rho
