"""Architectures in the users' own forms through the SDK against a real server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from client_sdk import AsyncOracleClient, InvalidArchitecture, OracleClient
from client_sdk.spaces import formats as F
from client_sdk.spaces import get_space
from tests.helpers import HELP_NB201_REFS, unique_name

SPACE = get_space("nasbench201")


def test_strings_and_nats_indices_rank_like_genes(client: OracleClient) -> None:
    genes = SPACE.sample(3000, rng=31)
    ref = client.rank("nasbench201", genes, ["pixel3", "1080ti_1"], top_k=50)
    before = client.num_rpcs
    for archs in (SPACE.format_many(genes), F.from_genes(SPACE, genes, "index"),
                  F.from_genes(SPACE, genes, "index").tolist()):
        got = client.rank("nasbench201", archs, ["pixel3", "1080ti_1"], top_k=50)
        for dev in ("pixel3", "1080ti_1"):
            np.testing.assert_array_equal(got.latency_ms[dev], ref.latency_ms[dev])
            np.testing.assert_array_equal(got.order[dev], ref.order[dev])
    assert client.num_rpcs == before + 3


def test_register_from_nats_indices(client: OracleClient) -> None:
    idx = list(HELP_NB201_REFS)
    lat = SPACE.table.device_column("raspi4")[SPACE.rows_of_index(idx)]
    name = unique_name("nats")
    dev = client.register_device(name, "nasbench201", (idx, lat))
    assert dev.num_samples == len(idx)
    more = [100, 200, 300]
    dev = client.add_measurements(
        f"nasbench201/{name}", list(zip(more, [5.0, 6.0, 7.0], strict=True))
    )
    assert dev.num_samples == len(idx) + 3
    assert client.delete_device(name, "nasbench201")


def test_bad_native_architectures_name_the_index(client: OracleClient) -> None:
    before = client.num_rpcs
    with pytest.raises(InvalidArchitecture) as err:
        client.rank("nasbench201", [5, 7, 99999], "pixel3")
    assert err.value.index == 2 and "99999" in err.value.message
    strings = SPACE.format_many(SPACE.sample(4, rng=1))
    strings[3] = strings[3].replace("~2|", "~1|")
    with pytest.raises(InvalidArchitecture) as err:
        client.rank("nasbench201", strings, "pixel3")
    assert err.value.index == 3 and "archs[3]" in err.value.message
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3"):
        client.rank("nasbench201", [{"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": [224]}],
                    "pixel3")
    assert client.num_rpcs == before  # rejected before any RPC


def test_async_client_accepts_native_forms(server) -> None:
    genes = SPACE.sample(200, rng=2)
    idx = F.from_genes(SPACE, genes, "index")

    async def go() -> tuple[np.ndarray, np.ndarray]:
        async with AsyncOracleClient(f"127.0.0.1:{server.port}") as c:
            a = await c.rank("nasbench201", idx, "pixel3")
            b = await c.rank("nasbench201", SPACE.format_many(genes), "pixel3")
            return a.latency_ms["pixel3"], b.latency_ms["pixel3"]

    a, b = asyncio.run(go())
    np.testing.assert_array_equal(a, b)
