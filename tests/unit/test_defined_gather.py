"""``defined_gather.gather`` (a definition's descriptors, projected descriptors and MACs /
params) against the implementation it replaced, kept here as the reference: the same rows
added in the same order, so the float64 sums must be equal bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.spaces import get_space
from client_sdk.spaces.defined import DefinedSpace, space_from_definition
from client_sdk.spaces.defined_gather import gather, gene_columns

SHIPPED = ("nasbench201", "fbnet", "ofa_mbv3", "mobilenetv2", "proxyless")

#: resolution AND width choices, a depth choice, a fixed-depth stage of op choices whose
#: first block has one candidate, a stage without any choice (positions reading no gene)
TOY = {
    "name": "toy_gather",
    "description": "gather test space",
    "input": {"channels": 3, "resolution": [32, 40, 48]},
    "width": [0.5, 0.75, 1.0],
    "stem": [{"op": "conv", "out": 16, "kernel": 3, "stride": 2, "act": "relu"}],
    "stages": [
        {"out": 16, "stride": 1, "depth": [1, 2, 3], "block": {"op": "mbconv", "se": True},
         "choose": {"kernel": [3, 5], "expand": [1, 4, 6]}},
        {"out": 32, "stride": 2, "depth": 2,
         "ops": [{"name": "a", "op": "conv", "kernel": 3},
                 {"name": "b", "op": "mbconv", "expand": 2, "groups": 2, "kernel": 3},
                 {"name": "s", "op": "skip"}],
         "first_ops": [{"name": "a", "op": "conv", "kernel": 3}]},
        {"out": 40, "stride": 2, "depth": 2, "block": {"op": "mbconv", "expand": 3}},
        {"out": 48, "stride": 1, "depth": [2, 4], "block": {"op": "mbconv"},
         "choose": {"kernel": [3, 5, 7]}},
    ],
    "head": [{"op": "conv", "out": 64, "kernel": 1}, {"op": "pool"},
             {"op": "linear", "out": 10}],
}


def reference_gather(
    sp: DefinedSpace, flat: np.ndarray, fixed: np.ndarray, genes: np.ndarray
) -> np.ndarray:
    """``DefinedSpace._gather`` before ``defined_gather`` (verbatim but for ``sp``)."""
    _, _, offsets, radix = sp._tables
    cols = np.ascontiguousarray(np.asarray(genes).T)
    if cols.dtype.kind not in "iu":
        cols = cols.astype(np.int64)
    n = cols.shape[1]
    per_combo = int(offsets[-1])
    zero = flat.shape[0] - 1
    base = None
    if sp._res_gene is not None or sp._width_gene is not None:
        base = sp._global_code_cols(cols) * per_combo
        out = fixed.take(base // per_combo, axis=0)
    else:
        out = np.empty((n, flat.shape[1]))
        out[:] = fixed[0]
    active: dict[int, np.ndarray] = {}
    for s, j in sp._depth_genes.items():
        active[s] = np.asarray(sp._values[j], dtype=np.int64).take(cols[j])
    for p, pos in enumerate(sp.positions):
        lo = int(offsets[p])
        if not pos.genes:
            code = np.zeros(n, dtype=np.int64)
        elif len(pos.genes) == 1:
            code = cols[pos.genes[0]]
        else:
            code = cols[pos.genes[0]].astype(np.int64) * radix[p][0]
            for j, r in zip(pos.genes[1:], radix[p][1:], strict=True):
                code += np.multiply(cols[j], r, dtype=np.int64) if r != 1 else cols[j]
        depth = active.get(pos.stage)
        if base is None and depth is None:
            out += flat[lo : int(offsets[p + 1])].take(code, axis=0)
            continue
        idx = np.add(code, lo, dtype=np.int64) if base is None else base + lo + code
        if depth is not None:
            idx = np.where(depth > pos.index, idx, zero)
        out += flat.take(idx, axis=0)
    return out


def spaces() -> list[DefinedSpace]:
    return [get_space(name) for name in SHIPPED] + [space_from_definition(TOY)]


@pytest.mark.parametrize("sp", spaces(), ids=lambda sp: sp.name)
def test_gather_equals_reference_bit_for_bit(sp: DefinedSpace) -> None:
    genes = sp.validate(sp.sample(3000, rng=5))
    assert genes.dtype == np.int16
    flat, fixed, _, _ = sp._tables
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(flat.shape[1], 5)) * 10.0 ** rng.integers(-9, 2, (flat.shape[1], 1))
    from oracle_server.predictor.transfer_features import _defined_tables

    tables = {
        "descriptors": (flat, fixed),
        "rich": _defined_tables(sp),  # the transferred basis's descriptors
        "projected": (flat @ matrix, fixed @ matrix),
        "costs": sp._cost_tables,
        "one column": (flat[:, :1].copy(), fixed[:, :1].copy()),
    }
    for what, (f, x) in tables.items():
        want = reference_gather(sp, f, x, genes)
        for g in (genes, genes.astype(np.int64), genes.astype(np.uint8), genes.astype(float)):
            got = gather(sp, f, x, g)
            assert got.dtype == np.float64 and got.shape == want.shape, what
            assert np.array_equal(got, want), (sp.name, what, g.dtype)
    # the public paths through it
    np.testing.assert_array_equal(sp.descriptors(genes), reference_gather(sp, flat, fixed, genes))
    np.testing.assert_array_equal(
        sp.descriptors(genes, matrix), reference_gather(sp, flat @ matrix, fixed @ matrix, genes)
    )


@pytest.mark.parametrize("n", [0, 1, 7, 1023, 1024, 1025, 2500])
def test_gather_any_batch_size(n: int) -> None:
    sp = get_space("mobilenetv2")
    genes = sp.validate(sp.sample(max(n, 1), rng=n))[:n]
    flat, fixed, _, _ = sp._tables
    got = gather(sp, flat, fixed, genes)
    assert got.shape == (n, flat.shape[1])
    np.testing.assert_array_equal(got, reference_gather(sp, flat, fixed, genes))
    # a row's sums do not depend on the batch it is in
    if n > 1:
        np.testing.assert_array_equal(gather(sp, flat, fixed, genes[1:2]), got[1:2])


def test_inactive_blocks_read_nothing() -> None:
    """Changing the genes of blocks past their stage's depth changes nothing."""
    sp = get_space("mobilenetv2")
    genes = sp.validate(sp.sample(500, rng=2))
    genes[:, [sp._depth_genes[s] for s in sp._depth_genes]] = 0  # every stage at depth 2
    other = genes.copy()
    for pos in sp.positions:
        if pos.stage in sp._depth_genes and pos.index >= 2:
            other[:, list(pos.genes)] = 1
    assert not np.array_equal(other, genes)
    np.testing.assert_array_equal(sp.descriptors(other), sp.descriptors(genes))


def test_gene_columns_is_the_transpose() -> None:
    rng = np.random.default_rng(0)
    for shape in ((0, 4), (1, 3), (2049, 48), (5000, 21)):
        g = rng.integers(0, 7, shape).astype(np.int16)
        cols = gene_columns(g)
        assert cols.flags.c_contiguous and cols.dtype == g.dtype
        np.testing.assert_array_equal(cols, g.T)


def test_shared_rows_reuses_rows_of_the_same_array_only_inside() -> None:
    from client_sdk.spaces import defined_gather as dg

    sp = get_space("mobilenetv2")
    genes = sp.validate(sp.sample(800, rng=4))
    flat, fixed, _, _ = sp._tables
    costs = sp._cost_tables
    calls = []
    real = dg.table_rows

    def counting(*args):
        calls.append(args[1])
        return real(*args)

    dg.table_rows = counting
    try:
        with dg.shared_rows():
            a = gather(sp, flat, fixed, genes)
            b = gather(sp, *costs, genes)
            assert len(calls) == 1  # the second gather of the same array reused its rows
            same_values = genes.copy()  # another array: its own rows
            np.testing.assert_array_equal(gather(sp, *costs, same_values), b)
            assert len(calls) == 2
            with dg.shared_rows():  # nested: its own memo
                gather(sp, *costs, genes)
            assert len(calls) == 3
        np.testing.assert_array_equal(a, reference_gather(sp, flat, fixed, genes))
        np.testing.assert_array_equal(b, reference_gather(sp, *costs, genes))
        genes[:, sp._res_gene] = (genes[:, sp._res_gene] + 1) % 5  # changed after the block
        np.testing.assert_array_equal(gather(sp, *costs, genes),
                                      reference_gather(sp, *costs, genes))
        assert len(calls) == 4  # outside a block nothing is reused
    finally:
        dg.table_rows = real


def test_a_chunk_computes_the_tree_table_variables_once() -> None:
    """Inside ``shared_rows`` the basis columns and the projected proxy features of the same
    genes read one computation of the tree tables' variables, with the same values as
    outside it."""
    from oracle_server.predictor import ProxyConfig, build_model

    model = build_model("ofa_mbv3", basis_devices=("2080ti_1", "titan_xp_32"),
                        config=ProxyConfig(num_rounds=10))
    tables = model.proxy.tables
    assert tables is not None and model.projects_features
    genes = model.space.validate(model.space.sample(300, rng=2))
    matrix = np.random.default_rng(0).normal(size=(model.num_features, 3))
    basis, proj = model.basis(genes, columns=[1]), model.features_projected(genes, matrix)
    calls = []
    real = tables._compute_variables

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    tables._compute_variables = counting
    try:
        from client_sdk.spaces import defined_gather as dg

        with dg.shared_rows():
            np.testing.assert_array_equal(model.basis(genes, columns=[1]), basis)
            np.testing.assert_array_equal(model.features_projected(genes, matrix), proj)
            assert len(calls) == 1
            model.features_projected(genes.copy(), matrix)  # another array: computed again
            assert len(calls) == 2
        model.features_projected(genes, matrix)  # outside a block: nothing kept
        assert len(calls) == 3
    finally:
        del tables._compute_variables


@pytest.mark.parametrize("name", [*SHIPPED, "toy"])
def test_compiled_rows_equal_numpy(name: str, monkeypatch) -> None:
    """The server's numba ``defined_rows`` (installed with ``use_kernel``) gives the same
    table rows as numpy for every gene dtype, hence the same gather-sums bit for bit."""
    from client_sdk.spaces import defined_gather
    from oracle_server.predictor import _tree_kernel, tree_tables

    sp = space_from_definition(TOY) if name == "toy" else get_space(name)
    genes = np.concatenate([sp.sample(400, rng=11), np.zeros((1, sp.num_genes), np.int64),
                            (sp.cardinalities - 1)[None, :]])
    flat, fixed, _, _ = sp._tables
    # the background kernel loader (started by any earlier Rank in this process) must be
    # done before the patch, or it installs the kernel and the teardown then removes it
    tree_tables.start_kernel(wait=True)
    monkeypatch.setattr(defined_gather, "_ROWS_KERNEL", None)
    combo, rows = defined_gather.table_rows(sp, genes, flat.shape[0])
    want = gather(sp, flat, fixed, genes)
    defined_gather.use_kernel(_tree_kernel.defined_rows)
    for dtype in (np.int64, np.int16, np.uint8):
        got_combo, got = defined_gather.table_rows(sp, genes.astype(dtype), flat.shape[0])
        assert (combo is None) == (got_combo is None)
        if combo is not None:
            assert np.array_equal(combo, got_combo)
        assert [own for _, own in got] == [own for _, own in rows]
        for (a, _), (b, _) in zip(rows, got, strict=True):
            assert np.array_equal(a, b)
        assert np.array_equal(gather(sp, flat, fixed, genes.astype(dtype)), want)


def test_server_kernels_install_the_compiled_rows(monkeypatch) -> None:
    """Loading the server's kernels installs the compiled rows (whatever an earlier test or
    load left in place: the loader runs here, in this thread)."""
    from client_sdk.spaces import defined_gather
    from oracle_server.predictor import _tree_kernel, tree_tables

    tree_tables.start_kernel(wait=True)
    monkeypatch.setattr(defined_gather, "_ROWS_KERNEL", None)
    tree_tables._load_kernel()
    assert defined_gather._ROWS_KERNEL is _tree_kernel.defined_rows
