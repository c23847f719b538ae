"""Every RPC against a real in-process server, through the SDK and through raw stubs."""

from __future__ import annotations

import urllib.request

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from scipy.stats import norm, spearmanr

from client_sdk import (
    AlreadyExists,
    DeviceNotFound,
    InvalidArchitecture,
    InvalidArgument,
    NotFound,
    OracleClient,
    ResourceExhausted,
    SpaceNotFound,
)
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from client_sdk.spaces import get_space
from tests.e2e.conftest import MAX_BATCH
from tests.helpers import HELP_NB201_REFS, HELP_NB201_TRAIN, unique_name

SPACE = get_space("nasbench201")


def test_list_spaces_and_devices(client: OracleClient) -> None:
    # the session server's bundled space, beside the network spaces ("nets_<hash>") that
    # other tests (test_cli_networks) may have registered on the same server
    spaces = [s for s in client.list_spaces() if not s.name.startswith("nets_")]
    assert [s.name for s in spaces] == ["nasbench201"]
    nb = spaces[0]
    assert nb.num_architectures == 15625 and nb.num_genes == 6
    assert set(nb.table_devices) == set(HELP_NB201_TRAIN)
    assert "cifar10" in nb.accuracy_metrics
    assert SPACE.parse(nb.example_arch).shape == (6,)
    devices = {d.full_name: d for d in client.list_devices("nasbench201")}
    assert "nasbench201/pixel3" in devices
    d = client.get_device("nasbench201/pixel3")
    assert d.source == "table" and d.name == "pixel3" and d.space == "nasbench201"
    assert client.get_device("pixel3", "nasbench201") == d


def test_rank_whole_table_matches_measurements(client: OracleClient) -> None:
    genes = SPACE.table.genes
    res = client.rank("nasbench201", genes, ["pixel3", "nasbench201/silver_4114"])
    assert res.num_architectures == 15625
    for dev in ("pixel3", "nasbench201/silver_4114"):
        lat = res.latency_ms[dev]
        assert lat.shape == (15625,) and np.all(np.isfinite(lat))
        true = SPACE.table.device_column(dev.split("/")[-1])
        assert spearmanr(lat, true)[0] > 0.95
        order = res.order[dev]
        assert sorted(order.tolist()) == list(range(15625))
        assert np.all(np.diff(lat[order]) >= 0)


def test_rank_strings_equal_packed(client: OracleClient) -> None:
    genes = SPACE.sample(50, rng=1)
    a = client.rank("nasbench201", genes, "pixel3")
    b = client.rank("nasbench201", SPACE.format_many(genes), "pixel3")
    np.testing.assert_array_equal(a.latency_ms["pixel3"], b.latency_ms["pixel3"])


def test_rank_top_k_budget_uncertainty(client: OracleClient) -> None:
    genes = SPACE.sample(500, rng=2)
    full = client.rank("nasbench201", genes, "pixel3").latency_ms["pixel3"]
    budget = float(np.median(full))
    res = client.rank("nasbench201", genes, "pixel3", top_k=7, max_latency_ms=budget,
                      return_uncertainty=True, interval_level=0.8)
    order = res.order["pixel3"]
    assert len(order) == 7
    np.testing.assert_array_equal(order, np.argsort(full, kind="stable")[:7])
    lo, hi, p = res.lower_ms["pixel3"], res.upper_ms["pixel3"], res.prob_within_budget["pixel3"]
    assert np.all(lo <= full + 1e-4) and np.all(full <= hi + 1e-4)
    # the head's log-normal: the central 80 % interval gives its median and sigma, and those
    # give P(latency <= budget)
    log_lo, log_hi = np.log(lo.astype(np.float64)), np.log(hi.astype(np.float64))
    log_median, log_sigma = (log_lo + log_hi) / 2, (log_hi - log_lo) / (2 * norm.ppf(0.9))
    expected_p = norm.cdf((np.log(budget) - log_median) / log_sigma)
    np.testing.assert_allclose(p, expected_p, atol=1e-4)
    # below-budget architectures are more likely to meet it
    assert p[full < budget].mean() > p[full > budget].mean()
    only_order = client.rank("nasbench201", genes, "pixel3", return_latencies=False)
    assert only_order.latency_ms["pixel3"].size == 0 and len(only_order.order["pixel3"]) == 500


def test_rank_is_chunked_transparently(server) -> None:
    genes = SPACE.sample(1000, rng=3)
    with OracleClient(f"127.0.0.1:{server.port}", chunk_size=300) as c:
        res = c.rank("nasbench201", genes, "pixel3", top_k=10)
        assert c.num_rpcs == 4
    with OracleClient(f"127.0.0.1:{server.port}") as c:
        ref = c.rank("nasbench201", genes, "pixel3", top_k=10)
    np.testing.assert_array_equal(res.latency_ms["pixel3"], ref.latency_ms["pixel3"])
    np.testing.assert_array_equal(res.order["pixel3"], ref.order["pixel3"])


def test_register_add_compare_delete(client: OracleClient) -> None:
    name = unique_name("pixel2")
    genes = SPACE.genes_of_index(HELP_NB201_REFS)
    true = SPACE.table.device_column("pixel2")
    lat = true[SPACE.table_rows(genes)]
    contract = {"batch_size": 1, "threads": 4, "runtime": "tflite", "precision": "fp32"}
    dev = client.register_device(name, "nasbench201", (genes, lat), contract)
    assert dev.source == "registered" and dev.num_samples == 10
    assert dev.contract["runtime"] == "tflite" and dev.contract["unit"] == "ms/inference"
    assert dev.head_kind
    # the head's expected Spearman is an honest estimate of the Spearman on the whole table
    # (0.93 estimated vs 0.90 true when written)
    first = client.rank("nasbench201", SPACE.table.genes, name).latency_ms[name]
    assert abs(dev.expected_spearman - spearmanr(first, true)[0]) < 0.1
    assert dev.created_at is not None
    with pytest.raises(AlreadyExists):
        client.register_device(name, "nasbench201", (genes, lat))
    more = SPACE.sample(5, rng=4)
    dev2 = client.add_measurements(f"nasbench201/{name}", (more, true[SPACE.table_rows(more)]))
    assert dev2.num_samples == 15 and dev2.updated_at >= dev.updated_at
    res = client.rank("nasbench201", SPACE.table.genes, [name, "pixel3"])
    assert spearmanr(res.latency_ms[name], true)[0] > 0.7
    cmp = client.compare_devices(name, "pixel3", "nasbench201")
    # the two devices' predictions over the whole table, ranked against each other
    predicted = spearmanr(res.latency_ms[name], res.latency_ms["pixel3"]).statistic
    assert cmp.num_predicted == 15625
    assert cmp.spearman_predicted == pytest.approx(predicted, abs=1e-6)
    assert cmp.num_shared == 15 and cmp.spearman_measured > 0.5
    assert client.delete_device(name, "nasbench201") is True
    with pytest.raises(DeviceNotFound):
        client.get_device(name, "nasbench201")
    assert client.delete_device(name, "nasbench201") is False


def test_register_from_strings_dict(client: OracleClient) -> None:
    genes = SPACE.sample(8, rng=5)
    lat = SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]
    meas = dict(zip(SPACE.format_many(genes), lat.tolist(), strict=True))
    name = unique_name("raspi")
    dev = client.register_device(name, "nasbench201", meas)
    assert dev.num_samples == 8
    client.delete_device(name, "nasbench201")


def test_suggest_references(client: OracleClient) -> None:
    genes = client.suggest_references("nasbench201", 10, seed=0)
    assert genes.shape == (10, 6)
    SPACE.validate(genes)
    assert len({g.tobytes() for g in genes}) == 10


def test_suggest_references_for_a_registered_device(client: OracleClient) -> None:
    """Adaptive onboarding: the next architectures for a device are new to it, differ from
    the first-time references, and move on once they are measured."""
    first = client.suggest_references("nasbench201", 10, seed=0)
    name = unique_name("adaptive")
    client.register_device(name, "nasbench201", (first, SPACE.flops(first) / 1e6 + 1.0))
    try:
        nxt = client.suggest_references("nasbench201", 6, device=name)
        assert nxt.shape == (6, 6)
        SPACE.validate(nxt)
        seen = {g.tobytes() for g in first}
        assert not seen & {g.tobytes() for g in nxt}
        assert len({g.tobytes() for g in nxt}) == 6
        fresh = client.suggest_references("nasbench201", 6, seed=0)
        assert {g.tobytes() for g in nxt} != {g.tobytes() for g in fresh}
        client.add_measurements(name, (nxt, SPACE.flops(nxt) / 1e6 + 1.0), "nasbench201")
        seen |= {g.tobytes() for g in nxt}
        again = client.suggest_references("nasbench201", 6, device=f"nasbench201/{name}")
        assert not seen & {g.tobytes() for g in again}
        with pytest.raises(InvalidArgument) as info:
            client.suggest_references("nasbench201", 0, device=name)
        assert "n" in str(info.value)
    finally:
        client.delete_device(name, "nasbench201")
    with pytest.raises(DeviceNotFound) as nf:
        client.suggest_references("nasbench201", 5, device=name)
    assert nf.value.code == grpc.StatusCode.NOT_FOUND and name in str(nf.value)
    assert client.health() == "SERVING"


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "exc", "fragment"),
    [
        (lambda c: c.rank("nasbench201", np.array([[0, 1, 2, 3, 4, 0], [0, 1, 9, 0, 0, 0]]),
                          "pixel3"), InvalidArchitecture, "archs[1], gene 2"),
        (lambda c: c.rank("nasbench201", ["|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"],
                          "pixel3"), InvalidArchitecture, "archs[0], gene 0"),
        (lambda c: c.rank("nasbench201", np.zeros((3, 5), np.int16), "pixel3"),
         InvalidArgument, "num_genes"),
        (lambda c: c.rank("nasbench201", SPACE.sample(2, rng=0), "no_such_device"),
         DeviceNotFound, "no_such_device"),
        (lambda c: c.rank("nope", SPACE.sample(2, rng=0), "pixel3"), SpaceNotFound, "nope"),
        (lambda c: c.rank("nasbench201", SPACE.sample(2, rng=0), []), InvalidArgument, "devices"),
        (lambda c: c.rank("nasbench201", SPACE.sample(2, rng=0), "pixel3", max_latency_ms=-1),
         InvalidArgument, "max_latency_ms"),
        (lambda c: c.register_device("bad name!", "nasbench201", (SPACE.sample(3, rng=0),
                                     [1.0, 2.0, 3.0])), InvalidArgument, "name"),
        (lambda c: c.register_device(unique_name(), "nasbench201", (SPACE.sample(3, rng=0),
                                     [1.0, -2.0, 3.0])), InvalidArgument, "latency_ms[1]"),
        (lambda c: c.register_device(unique_name(), "nasbench201", (SPACE.sample(3, rng=0),
                                     [1.0, 2.0])), InvalidArgument, "latency_ms"),
        (lambda c: c.register_device("pixel3", "nasbench201", (SPACE.sample(3, rng=0),
                                     [1.0, 2.0, 3.0])), AlreadyExists, "pixel3"),
        (lambda c: c.get_device("pixel3"), InvalidArgument, "space"),
        (lambda c: c.get_device("ghost", "nasbench201"), NotFound, "ghost"),
        (lambda c: c.delete_device("pixel3", "nasbench201"), Exception, "table device"),
        (lambda c: c.suggest_references("nasbench201", 0), InvalidArgument, "n"),
    ],
)
def test_bad_input_gets_clear_status(client: OracleClient, call, exc, fragment) -> None:
    with pytest.raises(exc) as info:
        call(client)
    assert fragment in str(info.value)
    assert info.value.code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    assert client.health() == "SERVING"


def test_invalid_architecture_carries_index_and_gene(client: OracleClient) -> None:
    genes = SPACE.sample(20, rng=6)
    genes[13, 4] = 7
    with pytest.raises(InvalidArchitecture) as info:
        client.rank("nasbench201", genes, "pixel3")
    assert (info.value.index, info.value.gene) == (13, 4)
    assert "allowed 0..4" in info.value.message


def test_too_large_batch(client: OracleClient) -> None:
    genes = np.zeros((MAX_BATCH + 1, 6), np.uint8)
    with pytest.raises(ResourceExhausted, match=str(MAX_BATCH)):
        client.rank("nasbench201", genes, "pixel3")


def test_raw_stub_garbage_is_invalid_argument(server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.LatencyOracleStub(ch)
        bad = pb.RankRequest(space="nasbench201", devices=["pixel3"],
                             archs=pb.Architectures(packed=pb.PackedGenes(num_genes=6,
                                                                          genes=b"\x00" * 7)))
        with pytest.raises(grpc.RpcError) as info:
            stub.Rank(bad, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "multiple of num_genes" in info.value.details()
        empty = pb.RankRequest(space="nasbench201", devices=["pixel3"])
        with pytest.raises(grpc.RpcError) as info:
            stub.Rank(empty, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # a raw byte blob that is not a RankRequest at all
        raw = ch.unary_unary("/latency_oracle.v1.LatencyOracle/Rank")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff", timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _standard_details(err: grpc.RpcError) -> dict:
    """What any gRPC client reads: the google.rpc.Status of the trailers, unpacked."""
    status = rpc_status.from_call(err)
    assert status is not None and status.code == err.code().value[0]
    assert status.message == err.details()
    out: dict = {}
    for item in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                    error_details_pb2.RetryInfo):
            if item.Is(cls.DESCRIPTOR):
                msg = cls()
                item.Unpack(msg)
                out[cls.__name__] = msg
    return out


def test_raw_stub_reads_standard_error_details(server) -> None:
    """No SDK: the details are plain google.rpc messages (grpcurl, Go and Java read them)."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.LatencyOracleStub(ch)
        genes = SPACE.sample(5, rng=2).astype(np.uint8)
        genes[3, 1] = 9
        bad = pb.RankRequest(space="nasbench201", devices=["pixel3"],
                             archs=pb.Architectures(packed=pb.PackedGenes(
                                 num_genes=6, genes=genes.tobytes())))
        with pytest.raises(grpc.RpcError) as info:
            stub.Rank(bad, timeout=5)
        details = _standard_details(info.value)
        error = details["ErrorInfo"]
        assert (error.reason, error.domain) == ("INVALID_ARCHITECTURE", "latency-oracle.v1")
        assert (error.metadata["index"], error.metadata["gene"]) == ("3", "1")
        (violation,) = details["BadRequest"].field_violations
        assert violation.field == "archs[3].genes[1]" and "allowed 0..4" in violation.description

        with pytest.raises(grpc.RpcError) as info:
            stub.GetDevice(pb.GetDeviceRequest(space="nasbench201", name="nope"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert _standard_details(info.value)["ErrorInfo"].reason == "DEVICE_NOT_FOUND"

        with pytest.raises(grpc.RpcError) as info:
            stub.ListDevices(pb.ListDevicesRequest(space="no-such-space"), timeout=5)
        assert _standard_details(info.value)["ErrorInfo"].reason == "SPACE_NOT_FOUND"

        too_many = np.zeros((MAX_BATCH + 1, 6), np.uint8)
        big = pb.RankRequest(space="nasbench201", devices=["pixel3"],
                             archs=pb.Architectures(packed=pb.PackedGenes(
                                 num_genes=6, genes=too_many.tobytes())))
        with pytest.raises(grpc.RpcError) as info:
            stub.Rank(big, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _standard_details(info.value)["ErrorInfo"].reason == "LIMIT_EXCEEDED"


def test_metrics_endpoint(client: OracleClient, server) -> None:
    client.rank("nasbench201", SPACE.sample(10, rng=7), "pixel3")
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read().decode()
    for name in (
        'grpc_server_started_total{grpc_method="Rank"',
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Rank"',
        "grpc_server_handling_seconds_bucket",
        'oracle_rank_architectures_total{space="nasbench201"}',
        'oracle_rank_stage_seconds_count{stage="proxy"}',
        'oracle_devices{source="table",space="nasbench201"} 9.0',
        "oracle_build_info{",
        "oracle_ready ",  # value is process-global: other in-process Apps may have stopped
    ):
        assert name in text, name
