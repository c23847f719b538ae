"""The bundled measurement tables: checksums, shapes, values, index columns."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from client_sdk.data import (
    DATA_DIR,
    SPACES_WITH_TABLES,
    expected_checksums,
    load_table,
    verify_checksums,
)

EXPECTED_SHAPES = {  # space -> (architectures, devices)
    "nasbench201": (15_625, 27),
    "fbnet": (5_000, 27),
    "ofa_mbv3": (5_000, 12),
}
ARCH_COLUMNS = {
    "nasbench201": ["arch_str", "cifar10_test_acc", "cifar100_test_acc", "imagenet16_120_test_acc"],
    "fbnet": [f"block{j}" for j in range(22)],
    "ofa_mbv3": ["resolution", "depths", "kernel_sizes", "expand_ratios"],
}


def test_all_checksums_verify():
    result = verify_checksums()
    assert result, "checksums.json lists no files"
    assert all(result.values()), {k: v for k, v in result.items() if not v}


def test_every_bundled_csv_is_checksummed():
    on_disk = {p.relative_to(DATA_DIR).as_posix() for p in DATA_DIR.rglob("*.csv")}
    listed = set(expected_checksums())
    assert on_disk == listed
    assert len(listed) == 2 * len(SPACES_WITH_TABLES)


# The published SHA-256 of every bundled file (PROVENANCE.md): checksums.json must list exactly
# these, so neither the data nor its checksum file can change unnoticed.
KNOWN_SHA256 = {
    "fbnet/architectures.csv": "0a8f7ad5c9cee166a6f10ccdd3e51683e86afb56aa5f78c0ae25ffe65e290463",
    "fbnet/latency_ms.csv": "e1d5e9d68a88b4f8f191c762ac7605db682400d03633a083eb00c6aae5821796",
    "nasbench201/architectures.csv":
        "2c922bd52c8ab767794ee41f5690d0e8ee12acbb85aa7e950343f8bde5d1de5e",
    "nasbench201/latency_ms.csv":
        "34b7c3623df18cd6eff6b8f112e85586140888d8bd9a4aff46883f119e136c38",
    "ofa_mbv3/architectures.csv":
        "d0f1ae513226495a249a516c88f7ae50e8008e13e2675116c0417d45dde19f11",
    "ofa_mbv3/latency_ms.csv": "f6874eed460477a4d988ba4eb3915c5c20a0283129d3e6508717e866dfbc0cc6",
}


def test_checksums_are_the_known_sha256_of_the_files():
    assert expected_checksums() == KNOWN_SHA256
    for rel, digest in KNOWN_SHA256.items():
        # computed here, independently of verify_checksums()
        assert hashlib.sha256((DATA_DIR / rel).read_bytes()).hexdigest() == digest, rel


def test_verify_checksums_detects_a_changed_file(tmp_path, monkeypatch):
    import client_sdk.data as data

    for rel in expected_checksums():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((DATA_DIR / rel).read_bytes())
    (tmp_path / "checksums.json").write_bytes((DATA_DIR / "checksums.json").read_bytes())
    changed = tmp_path / "fbnet" / "latency_ms.csv"
    changed.write_bytes(changed.read_bytes() + b"\n")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    result = data.verify_checksums()
    assert result["fbnet/latency_ms.csv"] is False
    assert sum(not ok for ok in result.values()) == 1


@pytest.mark.parametrize("space", SPACES_WITH_TABLES)
def test_shapes(space):
    raw = load_table(space)
    n, d = EXPECTED_SHAPES[space]
    assert raw.latency_ms.shape == (n, d)
    assert raw.latency_ms.dtype == np.float64
    assert raw.index.shape == (n,)
    assert len(raw.devices) == d
    assert len(set(raw.devices)) == d, "duplicate device columns"
    assert list(raw.arch_columns) == ARCH_COLUMNS[space]
    assert all(len(col) == n for col in raw.arch_columns.values())


@pytest.mark.parametrize("space", SPACES_WITH_TABLES)
def test_latencies_finite_and_non_negative(space):
    lat = load_table(space).latency_ms
    assert not np.isnan(lat).any()
    assert np.isfinite(lat).all()
    assert (lat >= 0).all()
    # every device column actually varies (a constant column would be a conversion bug)
    assert (lat.max(axis=0) > lat.min(axis=0)).all()


@pytest.mark.parametrize("space", SPACES_WITH_TABLES)
def test_index_column_matches(space):
    raw = load_table(space)
    n = EXPECTED_SHAPES[space][0]
    # index is 0..n-1 in order, and the latency file's own index column agrees row by row
    np.testing.assert_array_equal(raw.index, np.arange(n))
    lines = (DATA_DIR / space / "latency_ms.csv").read_text().splitlines()
    assert lines[0].split(",")[1:] == list(raw.devices)
    lat_index = np.array([line.partition(",")[0] for line in lines[1:] if line], dtype=np.int64)
    np.testing.assert_array_equal(lat_index, raw.index)
    first = np.array(lines[1].split(",")[1:], dtype=np.float64)
    np.testing.assert_array_equal(raw.latency_ms[0], first)


def test_nasbench201_accuracies_are_percentages():
    raw = load_table("nasbench201")
    for col in ARCH_COLUMNS["nasbench201"][1:]:
        acc = np.array(raw.arch_columns[col], dtype=np.float64)
        assert np.isfinite(acc).all()
        assert ((acc >= 0) & (acc <= 100)).all()
        assert acc.max() > 40  # percentages, not fractions


def test_expected_device_names():
    assert "raspi4" in load_table("nasbench201").devices
    assert {"fpga", "eyeriss", "pixel2", "titan_rtx_256", "gold_6226"} <= set(
        load_table("nasbench201").devices
    )
    assert {"fpga", "eyeriss", "raspi4", "titan_rtx_64"} <= set(load_table("fbnet").devices)
    assert {"titan_rtx_1", "titan_rtx_32", "titan_rtx_64"} <= set(load_table("ofa_mbv3").devices)


def test_unknown_table_raises_key_error():
    with pytest.raises(KeyError):
        load_table("nope")


def test_load_table_is_cached():
    assert load_table("fbnet") is load_table("fbnet")


def test_provenance_lists_every_checksum():
    text = (DATA_DIR / "PROVENANCE.md").read_text()
    for rel, digest in expected_checksums().items():
        assert rel in text
        assert digest in text


@pytest.mark.parametrize("space", SPACES_WITH_TABLES)
def test_crlf_files_parse_cleanly(space):
    """The bundled files have CRLF line endings; no stray '\\r' may reach names or values."""
    raw = load_table(space)
    assert all("\r" not in d for d in raw.devices)
    assert all("\r" not in name for name in raw.arch_columns)
    for col in raw.arch_columns.values():
        assert not any("\r" in v or v == "" for v in col)
