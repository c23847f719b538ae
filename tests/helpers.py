"""Test helpers: servers on port 0 (subprocesses via tests.support.launch), PostgreSQL access."""

from __future__ import annotations

import argparse
import copy
import os
import random
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.launch import RedisProcess, RedisUnavailable, ServerProcess
from tests.support.nb201 import REPO
from tests.support.nb201 import TEST_CACHE as TEST_CACHE  # re-exported for the tests
from tests.support.nb201 import nb201_non_train_devices as nb201_non_train_devices

PG_URL = os.environ.get("ORACLE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: HELP's NB201 meta-train devices, written out independently of
#: ``oracle_server.evaluation.HELP_SPLITS`` (which :func:`nb201_non_train_devices` reads): the
#: e2e tests check the served table devices against this list.
HELP_NB201_TRAIN = (
    "1080ti_1",
    "1080ti_32",
    "1080ti_256",
    "silver_4114",
    "silver_4210r",
    "samsung_a50",
    "pixel3",
    "essential_ph_1",
    "samsung_s7",
)
HELP_NB201_TEST = ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss")
HELP_NB201_REFS = (11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462)


def postgres_available() -> str | None:
    """None if the local PostgreSQL answers, else the reason."""
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} not reachable: {exc.__class__.__name__}"
    return None


def unique_name(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def server_process(args: list[str], env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``oracle-server serve`` on free ports, run from the checkout; killed on exit."""
    with ServerProcess(args, env, cwd=REPO) as srv:
        yield srv


def private_redis(password: str = "", port: int = 0) -> RedisProcess:
    """A throw-away ``redis-server`` on ``port`` (0: a free loopback port; no persistence),
    or a skip of the calling test with the reason when none can be started."""
    try:
        return RedisProcess(port, password)
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


#: How long a test waits for a write on one replica to show on another: the poll interval
#: (0.2-0.5 s) plus a head refit. Generous so that a loaded CI machine does not fail a
#: correctness test; the typical figure (< 1 s) is reported by `make cluster-demo`.
PROPAGATION_DEADLINE_S = 5.0


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port_block(n: int) -> int:
    """A base port such that base .. base + n - 1 are free now, chosen BELOW the ephemeral
    range: the kernel hands out ephemeral ports to every ``bind(0)`` / outgoing connection of
    the tests running in parallel, so a block taken from that range can be grabbed between
    this check and the server's own bind (a replica then fails, or another test's server
    answers on its port)."""
    high = _ephemeral_low() - n
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(15000, high)
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def serve_flags(*argv: str) -> argparse.Namespace:
    """``argv`` parsed as ``oracle-server serve`` flags (for ``load_settings``)."""
    from oracle_server.settings import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def user_copy(space: str, name: str) -> dict:
    """The shipped definition of ``space`` as a user's copy: without its table, named ``name``."""
    import yaml

    from client_sdk.spaces import shipped_definitions

    d = yaml.safe_load(shipped_definitions()[space])
    del d["table"]
    d["name"] = name
    return d


def edited(d: dict, path: str, value: object) -> dict:
    """A deep copy of the (definition) dict ``d`` with the value at the dotted ``path`` set to
    ``value`` (numeric path parts index lists: ``stages.1.choose``)."""
    d = copy.deepcopy(d)
    node: object = d
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]  # type: ignore[index]
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value  # type: ignore[index]
    return d
