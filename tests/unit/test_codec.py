"""codec: packed genes decode exactly like ``space.validate``; little-endian outputs."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.errors import InvalidArchitecture, InvalidArgument
from client_sdk.spaces import get_space
from oracle_server import codec


@pytest.mark.parametrize("name", ["nasbench201", "fbnet", "ofa_mbv3"])
def test_packed_decode_equals_validate(name: str) -> None:
    space = get_space(name)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, space.cardinalities[None, :], size=(500, space.num_genes))
    got = codec.decode_archs(space, codec.archs_message(raw))
    expected = space.validate(raw)  # canonical (OFA: inactive blocks reset)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype and got.flags.c_contiguous
    low = np.zeros((3, space.num_genes), dtype=np.int64)  # all genes below every cardinality
    np.testing.assert_array_equal(
        codec.decode_archs(space, codec.archs_message(low)), space.validate(low)
    )


def test_packed_decode_reports_the_bad_gene() -> None:
    space = get_space("nasbench201")
    genes = space.sample(10, rng=1).astype(np.uint8)
    genes[4, 3] = 5
    with pytest.raises(InvalidArchitecture) as err:
        codec.decode_archs(space, codec.archs_message(genes))
    assert err.value.index == 4 and err.value.gene == 3
    empty = codec.decode_archs(space, codec.archs_message(genes[:0]))
    assert empty.shape == (0, 6)
    msg = codec.archs_message(genes)
    msg.packed.genes = msg.packed.genes[:-1]
    with pytest.raises(InvalidArgument):
        codec.decode_archs(space, msg)


@pytest.mark.parametrize("gene", [1, 30, 0])
def test_packed_decode_checks_every_gene_position(gene: int) -> None:
    """OFA's genes have cardinalities 25 / 3 / 3: a per-position check (not the batch's
    max against the smallest cardinality) lets valid batches skip ``validate``, and still
    catches a value valid elsewhere but not at its own position."""
    space = get_space("ofa_mbv3")
    genes = space.sample(50, rng=2).astype(np.uint8)
    genes[7, gene] = space.cardinalities[gene]
    with pytest.raises(InvalidArchitecture) as err:
        codec.decode_archs(space, codec.archs_message(genes))
    assert err.value.index == 7 and err.value.gene == gene


def test_packed_outputs_are_little_endian() -> None:
    assert codec.f32_bytes(np.array([1.5], dtype=np.float64)) == np.float32(1.5).tobytes()
    assert codec.u32_bytes(np.array([258])) == b"\x02\x01\x00\x00"

