"""A real server on port 0, in-process, shared by the e2e tests of a session.

It serves NAS-Bench-201 with a proxy trained on HELP's meta-train devices only (every other
table device held out), so HELP's test devices can be registered through the API.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from client_sdk import OracleClient
from oracle_server.app import App
from oracle_server.predictor import LatencyModel, build_model
from oracle_server.settings import Settings
from tests.helpers import TEST_CACHE, nb201_non_train_devices

MAX_BATCH = 200_000


@pytest.fixture(scope="session")
def nb201_model() -> LatencyModel:
    return build_model("nasbench201", nb201_non_train_devices(), cache_dir=TEST_CACHE)


def make_settings(tmp_path, **overrides) -> Settings:
    base = dict(
        host="127.0.0.1", port=0, metrics_port=0, data_dir=tmp_path, workers=4,
        max_batch=MAX_BATCH, spaces=("nasbench201",), cache_dir=str(TEST_CACHE),
        sync_interval_s=0.2, grace_s=5.0,
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def server(nb201_model: LatencyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    settings = make_settings(tmp_path_factory.mktemp("oracle"))
    app = App(settings, models={"nasbench201": nb201_model}).start(
        block_until_ready=True, timeout_s=60
    )
    yield app
    app.stop(1.0)


@pytest.fixture()
def client(server: App) -> Iterator[OracleClient]:
    with OracleClient(f"127.0.0.1:{server.port}", timeout_s=30) as c:
        yield c


@pytest.fixture()
def run(server: App, capsys: pytest.CaptureFixture[str]):
    """The ``oracle`` CLI in-process against ``server``: ``run(*args) -> (code, out, err)``."""
    from client_sdk.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = main(["--target", f"127.0.0.1:{server.port}", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
