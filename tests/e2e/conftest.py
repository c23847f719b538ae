"""A real server on port 0, in-process, shared by the e2e tests of a session.

It serves NAS-Bench-201 with a proxy trained on HELP's meta-train devices only (every other
table device held out), so HELP's test devices can be registered through the API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from client_sdk import OracleClient
from oracle_server.app import App
from oracle_server.predictor import LatencyModel, build_model
from oracle_server.settings import Settings
from tests.support.nb201 import TEST_CACHE, nb201_non_train_devices, nb201_serve_args

MAX_BATCH = 200_000


@pytest.fixture(scope="session")
def nb201_model() -> LatencyModel:
    return build_model("nasbench201", nb201_non_train_devices(), cache_dir=TEST_CACHE)


def make_settings(tmp_path, **overrides) -> Settings:
    base = dict(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        data_dir=tmp_path,
        workers=4,
        max_batch=MAX_BATCH,
        spaces=("nasbench201",),
        cache_dir=str(TEST_CACHE),
        sync_interval_s=0.2,
        grace_s=5.0,
    )
    base.update(overrides)
    return Settings(**base)


def serve_args(data_dir: Path, *extra: str, grace_s: float = 1) -> list[str]:
    """``oracle-server serve`` flags of a subprocess server like the in-process one
    (NAS-Bench-201, the test proxy cache, HELP's non-train devices held out) on ``data_dir``
    with ``--grace-s grace_s``, then ``extra``."""
    return [*nb201_serve_args(), "--data-dir", str(data_dir), "--grace-s", str(grace_s), *extra]


@contextlib.contextmanager
def running(
    settings: Settings, models: Mapping[str, LatencyModel] | None = None, timeout_s: float = 60
) -> Iterator[App]:
    """An in-process server of ``settings`` (``models``: already built), SERVING within
    ``timeout_s``; stopped (1 s grace) on leaving."""
    app = App(settings, models=models).start(block_until_ready=True, timeout_s=timeout_s)
    try:
        yield app
    finally:
        app.stop(1.0)


def connect(app: App, timeout_s: float = 30) -> OracleClient:
    """A client of ``app`` (use it in a ``with``)."""
    return OracleClient(f"127.0.0.1:{app.port}", timeout_s=timeout_s)


@pytest.fixture(scope="session")
def server(nb201_model: LatencyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    settings = make_settings(tmp_path_factory.mktemp("oracle"))
    with running(settings, {"nasbench201": nb201_model}) as app:
        yield app


@pytest.fixture()
def client(server: App) -> Iterator[OracleClient]:
    with connect(server) as c:
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
