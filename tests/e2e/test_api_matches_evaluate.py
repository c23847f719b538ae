"""Through the API (proxy without the HELP test devices, each registered from its 10 HELP
reference architectures, Rank of the whole table) the Spearman matches
`oracle-server evaluate --protocol help` within 0.005."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk import OracleClient
from client_sdk.spaces import get_space
from oracle_server.evaluation import EvalOptions, evaluate_help
from oracle_server.predictor import spearman
from tests.helpers import HELP_NB201_REFS, TEST_CACHE, unique_name

SPACE = get_space("nasbench201")


@pytest.fixture(scope="module")
def protocol() -> dict:
    opts = EvalOptions(space="nasbench201", samples=10, reference="help", seeds=1,
                       arch_holdout=0.0, cache_dir=TEST_CACHE)
    return evaluate_help(opts)


@pytest.mark.parametrize("device", ["pixel2", "fpga"])
def test_api_reproduces_help_protocol(client: OracleClient, protocol: dict, device: str) -> None:
    genes = SPACE.genes_of_index(HELP_NB201_REFS)
    truth = SPACE.table.device_column(device)
    name = unique_name(device)
    client.register_device(name, "nasbench201", (genes, truth[SPACE.table_rows(genes)]))
    try:
        pred = client.rank("nasbench201", SPACE.table.genes, name).latency_ms[name]
    finally:
        client.delete_device(name, "nasbench201")
    refs = SPACE.table_rows(genes)
    keep = np.setdiff1d(np.arange(SPACE.num_architectures), refs)
    api = spearman(pred[keep].astype(np.float64), truth[keep])
    assert abs(api - protocol["devices"][device]) <= 0.005, (api, protocol["devices"][device])
    api_whole = spearman(pred.astype(np.float64), truth)
    assert abs(api_whole - protocol["devices_whole_table"][device]) <= 0.005
