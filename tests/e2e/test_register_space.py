"""Spaces over the wire: RegisterSpace / GetSearchSpace / ListSearchSpaces, persisted in the
registry (a second server on the same database serves the space and its devices), with bad
definitions named and nothing half-registered."""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from client_sdk import OracleClient
from client_sdk.errors import AlreadyExists, Internal, InvalidArgument, SpaceNotFound
from client_sdk.spaces import get_space
from oracle_server.app import App
from tests.e2e.conftest import connect, make_settings, running
from tests.unit.test_space_language import TOY

WIRE = {**copy.deepcopy(TOY), "name": "wire_space"}


def synthetic(space_name: str, genes: np.ndarray) -> np.ndarray:
    d = get_space(space_name).descriptors(genes)[:, :6]
    return 0.3 + 3e-8 * d[:, 0] + 2e-7 * d[:, 1] + 5e-8 * d[:, 3] + 0.01 * d[:, 4]


def start(data_dir: Path) -> contextlib.AbstractContextManager[App]:
    return running(make_settings(data_dir, spaces=("nasbench201",)), timeout_s=120)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spaces")


@pytest.fixture(scope="module")
def first(data_dir: Path) -> Iterator[App]:
    with start(data_dir) as app:
        yield app


@pytest.fixture()
def client(first: App) -> Iterator[OracleClient]:
    with connect(first, timeout_s=120) as c:
        yield c


def test_register_list_get_and_rank(client: OracleClient) -> None:
    info = client.register_space(yaml.safe_dump(WIRE))
    assert info.name == "wire_space" and info.num_architectures == 0
    assert json.loads(info.definition)["name"] == "wire_space"
    assert "wire_space" in [s.name for s in client.list_spaces()]
    again = client.register_space(WIRE)  # same definition (a mapping this time): idempotent
    assert again.definition == info.definition
    assert client.get_space("wire_space").definition == info.definition
    sp = get_space("wire_space")  # learnt locally from the reply
    genes = client.suggest_references("wire_space", 10, seed=1)
    client.register_device("npu", "wire_space", (genes, synthetic("wire_space", genes)))
    pool = sp.sample(500, rng=2)
    res = client.rank("wire_space", sp.format_many(pool), ["npu"])
    rho = np.corrcoef(np.argsort(np.argsort(res.latency_ms["npu"])),
                      np.argsort(np.argsort(synthetic("wire_space", pool))))[0, 1]
    assert rho > 0.8, rho


def test_changed_definition_is_refused(client: OracleClient) -> None:
    client.register_space(WIRE)
    changed = copy.deepcopy(WIRE)
    changed["stages"][0]["choose"]["kernel"] = [3, 5, 7]
    with pytest.raises(AlreadyExists, match="another definition"):
        client.register_space(changed)
    clash = {**copy.deepcopy(TOY), "name": "fbnet"}
    with pytest.raises(AlreadyExists):
        client.register_space(clash)


@pytest.mark.parametrize(("definition", "field"), [
    ({**WIRE, "name": "bad_op", "head": [{"op": "transformer"}]}, "definition.head[0].op"),
    ({**WIRE, "name": "bad_empty", "stages": []}, "definition.stages"),
    ("a: &a [1, 2]\nb: [*a, *a]\n", "definition"),
    ("#" * (1100 * 1024), "definition"),
    ("[1, 2, 3]", "definition"),
])
def test_bad_definitions_are_invalid_argument(client: OracleClient, definition, field) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.register_space(definition)
    assert info.value.field == field, info.value
    assert client.list_spaces()  # still serving
    with pytest.raises(SpaceNotFound):
        client.get_space("bad_op")


def test_failed_build_leaves_nothing(first: App, client: OracleClient) -> None:
    catalog = first.oracle.catalog
    assert catalog is not None
    real = catalog._build
    catalog._build = lambda name: (_ for _ in ()).throw(RuntimeError("no memory"))
    try:
        with pytest.raises(Internal):
            client.register_space({**WIRE, "name": "half_space"})
    finally:
        catalog._build = real
    with pytest.raises(SpaceNotFound):
        client.get_space("half_space")
    with pytest.raises(SpaceNotFound):
        get_space("half_space")
    assert "half_space" not in first.registry.space_names()


def test_a_second_server_on_the_same_registry_serves_it(first: App, data_dir: Path,
                                                         client: OracleClient) -> None:
    # self-contained (xdist may run this module's tests on different workers)
    client.register_space(WIRE)
    genes = get_space("wire_space").sample(8, rng=3)
    client.register_device("replica_dev", "wire_space", (genes, synthetic("wire_space", genes)))
    with start(data_dir) as second, connect(second, timeout_s=60) as other:
        assert other.get_space("wire_space").definition == client.get_space(
            "wire_space").definition
        assert "replica_dev" in [d.name for d in other.list_devices("wire_space")]


def test_cli_registers_from_a_file(first: App, tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**WIRE, "name": "cli_space"}))
    cli = Path(sys.executable).parent / "oracle"
    out = subprocess.run([str(cli), "--target", f"127.0.0.1:{first.port}", "space",
                          "register", "--file", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cli_space" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: cli_bad\ninput: {resolution: 0}\nstages: []\nhead: []\n")
    out = subprocess.run([str(cli), "--target", f"127.0.0.1:{first.port}", "space",
                          "register", "--file", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "INVALID_ARGUMENT" in out.stderr, out.stderr
    assert "input.resolution" in out.stderr and "Traceback" not in out.stderr
