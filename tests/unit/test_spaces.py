"""Search spaces against their bundled tables: strings, genes, rows, errors, features, FLOPs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from client_sdk.data import load_table
from client_sdk.errors import InvalidArchitecture, InvalidArgument, NotFound
from client_sdk.spaces import GENE_DTYPE, get_space, list_spaces
from client_sdk.spaces import fbnet as fb
from client_sdk.spaces import ofa_mbv3 as ofa

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")
TABLE_SIZES = {"nasbench201": 15_625, "fbnet": 5_000, "ofa_mbv3": 5_000}
NUM_GENES = {"nasbench201": 6, "fbnet": 22, "ofa_mbv3": 46}


@pytest.fixture(scope="module", params=SPACES)
def space(request):
    return get_space(request.param)


def _ofa(r=224, d=(4, 4, 4, 4, 4), k=(3,) * 20, e=(3,) * 20) -> str:
    join = lambda vs: "-".join(map(str, vs))  # noqa: E731
    return f"r={r} d={join(d)} k={join(k)} e={join(e)}"


def _nb(*ops: str) -> str:
    a, b, c, d, e, f = ops
    return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


# ------------------------------------------------------------------------ registry
def test_list_spaces():
    # the bundled spaces first, then the shipped definitions (spaces registered by other
    # tests of this process may follow)
    assert list_spaces()[:5] == [*SPACES, "mobilenetv2", "proxyless"]


def test_get_space_is_cached_singleton(space):
    assert get_space(space.name) is space


def test_unknown_space_raises_not_found():
    with pytest.raises(NotFound) as exc:
        get_space("nope")
    assert "nope" in str(exc.value)
    for name in SPACES:
        assert name in str(exc.value)


def test_invalid_architecture_is_invalid_argument():
    assert issubclass(InvalidArchitecture, InvalidArgument)


def test_info(space):
    info = space.info()
    assert info["name"] == space.name
    assert info["num_genes"] == NUM_GENES[space.name] == space.num_genes
    assert info["num_architectures"] == TABLE_SIZES[space.name]
    assert info["space_size"] == math.prod(int(c) for c in space.cardinalities)
    assert info["devices"] == list(space.table.devices)
    assert len(space.gene_names) == len(space.choices) == len(space.cardinalities)
    assert [len(c) for c in space.choices] == space.cardinalities.tolist()


def test_space_sizes():
    assert get_space("nasbench201").space_size == 5**6
    assert get_space("fbnet").space_size == 9**22
    assert get_space("ofa_mbv3").space_size == 25 * 3**5 * 3**40


# ------------------------------------------------------------------------ tables
def test_num_architectures_equals_table_size(space):
    assert space.num_architectures == TABLE_SIZES[space.name]
    t = space.table
    assert t.genes.shape == (TABLE_SIZES[space.name], space.num_genes)
    assert t.genes.dtype == GENE_DTYPE
    assert t.latency_ms.shape == (TABLE_SIZES[space.name], len(t.devices))
    np.testing.assert_array_equal(t.index, load_table(space.name).index)


def test_table_genes_are_valid_canonical_and_unique(space):
    genes = space.table.genes
    np.testing.assert_array_equal(space.validate(genes), genes)
    np.testing.assert_array_equal(space.canonicalize(genes), genes)
    assert len(np.unique(genes, axis=0)) == len(genes)


def test_roundtrip_string_genes_string_all_rows(space):
    genes = space.table.genes
    strings = space.format_many(genes)
    parsed = space.parse_many(strings)
    np.testing.assert_array_equal(parsed, genes)
    assert parsed.dtype == GENE_DTYPE
    assert [space.format(g) for g in parsed] == strings
    np.testing.assert_array_equal(space.parse_many([space.format(g) for g in parsed]), genes)


def test_table_strings_match_csv():
    raw = load_table("nasbench201")
    space = get_space("nasbench201")
    assert space.format_many(space.table.genes) == raw.arch_columns["arch_str"]
    raw = load_table("fbnet")
    space = get_space("fbnet")
    blocks = [raw.arch_columns[f"block{j}"] for j in range(22)]
    csv = ["-".join(ops) for ops in zip(*blocks, strict=True)]
    assert space.format_many(space.table.genes) == csv
    raw = load_table("ofa_mbv3")
    space = get_space("ofa_mbv3")
    cols = raw.arch_columns
    for i in (0, 1, 2500, 4999):
        s = f"r={cols['resolution'][i]} d={cols['depths'][i]} k={cols['kernel_sizes'][i]} " + (
            f"e={cols['expand_ratios'][i]}"
        )
        np.testing.assert_array_equal(space.parse(s), space.table.genes[i])
        # the active blocks are kept verbatim
        fmt = dict(p.split("=") for p in space.format(space.table.genes[i]).split())
        depths = [int(v) for v in cols["depths"][i].split("-")]
        assert fmt["r"] == cols["resolution"][i] and fmt["d"] == cols["depths"][i]
        for key, col in (("k", "kernel_sizes"), ("e", "expand_ratios")):
            ours, theirs = fmt[key].split("-"), cols[col][i].split("-")
            for s_, d in enumerate(depths):
                assert ours[4 * s_ : 4 * s_ + d] == theirs[4 * s_ : 4 * s_ + d]


def test_table_rows_of_table_genes_is_arange(space):
    n = space.num_architectures
    np.testing.assert_array_equal(space.table_rows(space.table.genes), np.arange(n))
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)[:500]
    np.testing.assert_array_equal(space.table_rows(space.table.genes[perm]), perm)


def test_table_rows_absent_is_minus_one(space):
    samples = space.sample(200, rng=1)
    rows = space.table_rows(samples)
    assert rows.dtype == np.int64
    present = rows >= 0
    np.testing.assert_array_equal(space.table.genes[rows[present]], samples[present])
    # the NB201 table holds the whole space; the sampled tables hold a tiny fraction
    assert present.all() if space.name == "nasbench201" else not present.any()
    assert space.table_rows(np.empty((0, space.num_genes), dtype=GENE_DTYPE)).shape == (0,)


def test_nasbench201_table_holds_every_cell():
    space = get_space("nasbench201")
    every = np.stack(np.meshgrid(*[np.arange(5)] * 6, indexing="ij"), -1).reshape(-1, 6)
    rows = space.table_rows(every.astype(GENE_DTYPE))
    assert (rows >= 0).all()
    assert len(np.unique(rows)) == 5**6


def test_official_index_to_genes_to_row(space):
    idx = space.table.index
    genes = space.genes_of_index(idx)
    np.testing.assert_array_equal(genes, space.table.genes)
    np.testing.assert_array_equal(space.rows_of_index(idx), np.arange(len(idx)))
    some = idx[[5, 0, len(idx) - 1, 5]]
    np.testing.assert_array_equal(space.rows_of_index(some), [5, 0, len(idx) - 1, 5])
    np.testing.assert_array_equal(space.rows_of_index(list(some)), [5, 0, len(idx) - 1, 5])


@pytest.mark.parametrize("missing", [-1, 15_625, 10**9])
def test_genes_of_unknown_index_raises_key_error(space, missing):
    with pytest.raises(KeyError):
        space.genes_of_index([0, missing])


# Official NAS-Bench-201 / NATS-Bench topology indices (strings as in the bundled CSV).
NB201_OFFICIAL = {
    0: _nb(
        "avg_pool_3x3",
        "nor_conv_1x1",
        "skip_connect",
        "nor_conv_1x1",
        "skip_connect",
        "skip_connect",
    ),
    1: _nb(
        "nor_conv_3x3",
        "nor_conv_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "skip_connect",
    ),
    1462: _nb(*["nor_conv_3x3"] * 6),
    1651: _nb(*["none"] * 6),
    11982: _nb(
        "avg_pool_3x3", "none", "skip_connect", "nor_conv_1x1", "skip_connect", "skip_connect"
    ),
    15624: _nb("nor_conv_1x1", "none", "nor_conv_1x1", "none", "nor_conv_1x1", "nor_conv_1x1"),
}


@pytest.mark.parametrize("index", sorted(NB201_OFFICIAL))
def test_nasbench201_official_index_order(index):
    space = get_space("nasbench201")
    arch = NB201_OFFICIAL[index]
    assert space.format(space.genes_of_index([index])[0]) == arch
    assert space.table_rows(space.parse(arch)[None])[0] == index
    assert space.table.index[index] == index  # table row == official index
    assert load_table("nasbench201").arch_columns["arch_str"][index] == arch


def test_nasbench201_accuracy_and_device_column():
    t = get_space("nasbench201").table
    assert set(t.accuracy) == {"cifar10", "cifar100", "imagenet16_120"}
    for acc in t.accuracy.values():
        assert acc.shape == (15_625,) and acc.dtype == np.float64
    assert t.accuracy["cifar10"][1462] == pytest.approx(93.76)
    raspi = t.latency_ms[:, t.devices.index("raspi4")]
    np.testing.assert_array_equal(t.device_column("raspi4"), raspi)
    assert get_space("fbnet").table.accuracy == {}
    assert get_space("ofa_mbv3").table.accuracy == {}


# ------------------------------------------------------------------------ parse errors
def _check_error(exc_info, index, gene, *needles):
    err = exc_info.value
    assert isinstance(err, InvalidArchitecture)
    assert err.index == index, (err.index, str(err))
    assert err.gene == gene, (err.gene, str(err))
    for needle in needles:
        assert needle in str(err), (needle, str(err))


def _check_parse_error(space: str, arch: str, index: int, gene, needles) -> None:
    """``parse(arch, index=index)`` of ``space`` raises, naming ``index``, ``gene`` and each
    of ``needles``."""
    with pytest.raises(InvalidArchitecture) as exc:
        get_space(space).parse(arch, index=index)
    _check_error(exc, index, gene, *needles)


NB_ALLOWED = "allowed: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3"
NB_OK = _nb("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none")

NB201_BAD = [
    # (arch, gene, message fragments)
    (
        _nb("none", "none", "none", "none", "conv_5x5", "none"),
        4,
        ["unknown operation 'conv_5x5'", NB_ALLOWED],
    ),
    (_nb("None", "none", "none", "none", "none", "none"), 0, ["'None'", NB_ALLOWED]),
    (_nb("", "none", "none", "none", "none", "none"), 0, ["unknown operation ''", NB_ALLOWED]),
    ("|none~0|+|none~0|none~1|", None, ["expected 3 nodes", "got 2"]),
    (NB_OK + "+|none~0|none~1|none~2|none~3|", None, ["expected 3 nodes", "got 4"]),
    (NB_OK.replace("+", ","), None, ["expected 3 nodes separated by '+'", "got 1"]),
    ("", None, ["expected 3 nodes"]),
    (NB_OK.replace("|+|", "+"), None, ["must be '|...|'"]),
    (NB_OK[:-1], None, ["node 3", "must be '|...|'"]),
    (
        "|none~0|+|none~0|none~1|none~2|+|none~0|none~1|none~2|",
        None,
        ["node 2 must have 2 incoming edges, got 3"],
    ),
    (
        "|none~0|+|none~0|none~1|+|none~0|none~1|",
        None,
        ["node 3 must have 3 incoming edges, got 2"],
    ),
    (
        "|none~0|+|none~0||none~1|+|none~0|none~1|none~2|",
        None,
        ["node 2 must have 2 incoming edges, got 3"],
    ),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", 0, ["must read 'op~0'"]),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", 2, ["node 2", "must read 'op~1'"]),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~1|", 5, ["node 3", "must read 'op~2'"]),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~02|", 5, ["must read 'op~2'"]),
    ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", 0, ["must read 'op~0'"]),
    ("|none-0|+|none~0|none~1|+|none~0|none~1|none~2|", 0, ["must read 'op~0'"]),
    ("|none~0|+|none~0|none~1|\n+|none~0|none~1|none~2|", None, ["must be '|...|'"]),
    ("|none~0|\n+|none~0|none~1|+|none~0|none~1|none~2|", None, ["must be '|...|'"]),
]


@pytest.mark.parametrize(("arch", "gene", "needles"), NB201_BAD)
def test_nasbench201_parse_errors(arch, gene, needles):
    _check_parse_error("nasbench201", arch, 7, gene, needles)


def test_nasbench201_parse_accepts_outer_whitespace():
    space = get_space("nasbench201")
    np.testing.assert_array_equal(space.parse(f"  {NB_OK}\n"), space.parse(NB_OK))
    np.testing.assert_array_equal(space.parse(NB_OK), [0, 1, 2, 3, 4, 0])


FB_OPS = list(fb.OPS)
FB_OK = "-".join((FB_OPS * 3)[:22])
FB_ALLOWED = "allowed: " + ", ".join(FB_OPS)


def _fb_with(j, op):
    ops = FB_OK.split("-")
    ops[j] = op
    return "-".join(ops)


FBNET_BAD = [
    ("-".join(FB_OK.split("-")[:21]), None, ["expected 22 ops joined by '-'", "got 21"]),
    (FB_OK + "-skip", None, ["expected 22 ops", "got 23"]),
    (FB_OK.replace("-", ","), None, ["expected 22 ops", "got 1"]),
    ("", None, ["expected 22 ops", "got 1"]),
    (_fb_with(0, "k7_e6"), 0, ["unknown operation 'k7_e6'", FB_ALLOWED]),
    (_fb_with(13, "identity"), 13, ["'identity'", FB_ALLOWED]),
    (_fb_with(21, "K3_E1"), 21, ["'K3_E1'", FB_ALLOWED]),
    (_fb_with(5, ""), 5, ["unknown operation ''"]),
    (_fb_with(5, "k3_e1_g3"), 5, ["'k3_e1_g3'"]),
]


@pytest.mark.parametrize(("arch", "gene", "needles"), FBNET_BAD)
def test_fbnet_parse_errors(arch, gene, needles):
    _check_parse_error("fbnet", arch, 3, gene, needles)


def test_fbnet_parse_ok():
    genes = get_space("fbnet").parse(FB_OK)
    np.testing.assert_array_equal(genes, (list(range(9)) * 3)[:22])


OFA_FORMAT = "'r=<resolution> d=<5 depth values> k=<20 kernel values> e=<20 expand values>'"
OFA_OK = _ofa()
OFA_BAD = [
    ("", None, ["missing ['d', 'e', 'k', 'r']", OFA_FORMAT]),
    (_ofa().replace("r=224 ", ""), None, ["missing ['r']", OFA_FORMAT]),
    (" ".join(p for p in _ofa().split() if not p.startswith("d=")), None, ["missing ['d']"]),
    (" ".join(p for p in _ofa().split() if p[0] not in "ke"), None, ["missing ['e', 'k']"]),
    (_ofa() + " r=224", None, ["bad part 'r=224'", OFA_FORMAT]),
    (_ofa() + " k=" + "-".join(["3"] * 20), None, ["bad part 'k="]),
    (_ofa() + " w=1.0", None, ["bad part 'w=1.0'"]),
    (_ofa().replace("r=224", "r224"), None, ["bad part 'r224'"]),
    (_ofa().replace("r=224", "R=224"), None, ["bad part 'R=224'"]),
    (_ofa().replace("e=", "e= "), None, ["bad part '3-3-3"]),
    (_ofa().replace(" ", ","), None, ["missing ['d', 'e', 'k']", OFA_FORMAT]),
    (_ofa(r=225), 0, ["unknown resolution '225'", "allowed: 128, 132,", ", 224)"]),
    (_ofa(r=100), 0, ["unknown resolution '100'"]),
    (_ofa(r="224.0"), 0, ["unknown resolution '224.0'"]),
    (_ofa(d=(4, 4, 4, 4)), 1, ["expected 5 depth values joined by '-'", "got 4"]),
    (_ofa(d=(4,) * 6), 1, ["expected 5 depth values", "got 6"]),
    (_ofa(d=(4, 4, 4, 4, 5)), 5, ["unknown depth '5'", "allowed: 2, 3, 4"]),
    (_ofa(d=(1, 4, 4, 4, 4)), 1, ["unknown depth '1'", "allowed: 2, 3, 4"]),
    (_ofa(k=(3,) * 19), 6, ["expected 20 kernel values joined by '-'", "got 19"]),
    (_ofa(k=(3,) * 21), 6, ["expected 20 kernel values", "got 21"]),
    (_ofa(k=(3, 3, 3, 4) + (3,) * 16), 9, ["unknown kernel '4'", "allowed: 3, 5, 7"]),
    (_ofa(e=(3,) * 19), 26, ["expected 20 expand values joined by '-'", "got 19"]),
    (_ofa(e=(3,) * 19 + (5,)), 45, ["unknown expand '5'", "allowed: 3, 4, 6"]),
    (_ofa(e=(3,) * 19 + ("",)), 45, ["unknown expand ''"]),
    # an inactive block's value must still be an allowed one
    (_ofa(d=(2,) * 5, k=(3, 3, 9) + (3,) * 17), 8, ["unknown kernel '9'"]),
]


@pytest.mark.parametrize(("arch", "gene", "needles"), OFA_BAD)
def test_ofa_parse_errors(arch, gene, needles):
    _check_parse_error("ofa_mbv3", arch, 11, gene, needles)


def test_ofa_parse_ok_and_key_order_free():
    space = get_space("ofa_mbv3")
    genes = space.parse(OFA_OK)
    assert genes.shape == (46,) and genes.dtype == GENE_DTYPE
    assert genes[0] == len(ofa.RESOLUTIONS) - 1
    np.testing.assert_array_equal(genes[1:6], 2)
    np.testing.assert_array_equal(genes[6:], 0)
    shuffled = " ".join(reversed(OFA_OK.split()))
    np.testing.assert_array_equal(space.parse("  " + shuffled.replace(" ", "\t ") + "\n"), genes)


@pytest.mark.parametrize("name", SPACES)
@pytest.mark.parametrize("value", [None, 42, b"|none~0|", ["none"] * 6, np.zeros(6)])
def test_parse_non_string(name, value):
    with pytest.raises(InvalidArchitecture) as exc:
        get_space(name).parse(value, index=4)
    _check_error(exc, 4, None, "expected a string", type(value).__name__)


def test_parse_many_reports_batch_index(space):
    good = space.format(space.table.genes[0])
    with pytest.raises(InvalidArchitecture) as exc:
        space.parse_many([good, good, "garbage", good])
    assert exc.value.index == 2
    assert str(exc.value).startswith("archs[2]")


# ------------------------------------------------------------------------ validate errors
def test_validate_accepts_and_returns_int16(space):
    genes = space.table.genes[:5].astype(np.int64)
    out = space.validate(genes)
    assert out.dtype == GENE_DTYPE
    np.testing.assert_array_equal(out, space.table.genes[:5])
    np.testing.assert_array_equal(space.validate(genes.tolist()), out)
    np.testing.assert_array_equal(space.validate(genes.astype(np.uint8)), out)
    np.testing.assert_array_equal(space.validate(genes.astype(np.float64)), out)
    assert space.validate([]).shape == (0, space.num_genes)
    assert space.validate(np.empty((0, space.num_genes), dtype=np.int64)).shape == (
        0,
        space.num_genes,
    )


@pytest.mark.parametrize("delta", [-1, +1])
def test_validate_wrong_gene_count(space, delta):
    g = space.num_genes
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(np.zeros((3, g + delta), dtype=np.int64))
    _check_error(exc, 0, None, f"length {g}", f"'{space.name}'", f"(3, {g + delta})")


def test_validate_ragged_batch(space):
    good = space.table.genes[0].tolist()
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate([good, good, good[:-1], good])
    _check_error(exc, 2, None, f"length {space.num_genes}")
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate([good, [*good[:-1], [0, 1]]])
    _check_error(exc, 1, None, f"length {space.num_genes}")


def test_validate_single_vector_is_not_a_batch(space):
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(space.table.genes[0])
    _check_error(exc, None, None, f"length {space.num_genes}")


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("kind", ["negative", "too_large", "way_too_large"])
def test_validate_out_of_range(space, where, kind):
    g = space.num_genes
    genes = space.table.genes[:4].astype(np.int64)
    j = {"first": 0, "middle": g // 2, "last": g - 1}[where]
    card = int(space.cardinalities[j])
    value = {"negative": -1, "too_large": card, "way_too_large": 40_000}[kind]
    genes[2, j] = value
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(genes)
    allowed = f"allowed 0..{card - 1}: {', '.join(space.choices[j])}"
    _check_error(exc, 2, j, f"value {value}", f"'{space.gene_names[j]}'", allowed)
    assert str(exc.value).startswith(f"archs[2], gene {j}:")


@pytest.mark.parametrize("value", [0.5, -0.25, 1.000001, np.nan, np.inf, -np.inf])
def test_validate_non_integer_float(space, value):
    genes = space.table.genes[:3].astype(np.float64)
    j = space.num_genes - 1
    genes[1, j] = value
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(genes)
    _check_error(exc, 1, j, "not an integer", f"'{space.gene_names[j]}'", "allowed 0..")


def test_validate_huge_float_reports_its_value(space):
    genes = space.table.genes[:3].astype(np.float64)
    genes[2, 0] = 1e30
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(genes)
    _check_error(exc, 2, 0, "value 1000000000000000019884624838656 out of range")


@pytest.mark.parametrize("dtype", [bool, str, object])
def test_validate_non_numeric(space, dtype):
    genes = np.zeros((2, space.num_genes)).astype(dtype)
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(genes)
    assert "genes must be integers" in str(exc.value)


def test_validate_ofa_depth_gene():
    space = get_space("ofa_mbv3")
    genes = space.table.genes[:2].copy()
    genes[1, 3] = 3
    with pytest.raises(InvalidArchitecture) as exc:
        space.validate(genes)
    _check_error(exc, 1, 3, "'depth2'", "allowed 0..2: 2, 3, 4")


def test_format_many_validates(space):
    genes = space.table.genes[:2].astype(np.int64)
    genes[1, 0] = -3
    with pytest.raises(InvalidArchitecture) as exc:
        space.format_many(genes)
    assert (exc.value.index, exc.value.gene) == (1, 0)


# ------------------------------------------------------------------------ OFA canonical form
def _scramble_inactive(genes: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    active = ofa.active_mask(genes)
    out = genes.copy()
    for sl in (ofa.KERNEL_GENES, ofa.EXPAND_GENES):
        noise = rng.integers(0, 3, size=active.shape)
        out[:, sl] = np.where(active, genes[:, sl], noise)
    return out


def test_ofa_inactive_blocks_do_not_matter():
    space = get_space("ofa_mbv3")
    genes = space.table.genes
    noisy = _scramble_inactive(genes, seed=0)
    assert (noisy != genes).any(axis=1).mean() > 0.9  # nearly every row really changed
    np.testing.assert_array_equal(space.canonicalize(noisy), genes)
    np.testing.assert_array_equal(space.validate(noisy), genes)
    np.testing.assert_array_equal(space.flops(noisy), space.flops(genes))
    np.testing.assert_array_equal(space.params(noisy), space.params(genes))
    np.testing.assert_array_equal(space.features(noisy), space.features(genes))
    np.testing.assert_array_equal(space.table_rows(space.validate(noisy)), np.arange(len(genes)))
    noisy_strings = [space.format(g) for g in noisy[:300]]
    np.testing.assert_array_equal(space.parse_many(noisy_strings), genes[:300])
    assert space.format_many(noisy[:300]) == space.format_many(genes[:300])
    other = _scramble_inactive(genes, seed=1)
    np.testing.assert_array_equal(space.canonicalize(other), space.canonicalize(noisy))


def test_ofa_canonical_form_is_first_choice_and_idempotent():
    space = get_space("ofa_mbv3")
    genes = space.sample(500, rng=3)
    active = ofa.active_mask(genes)
    assert active.shape == (500, 20)
    depth = np.asarray(ofa.DEPTHS)[genes[:, 1:6]]
    np.testing.assert_array_equal(active.reshape(500, 5, 4).sum(axis=2), depth)
    assert (genes[:, ofa.KERNEL_GENES][~active] == 0).all()
    assert (genes[:, ofa.EXPAND_GENES][~active] == 0).all()
    np.testing.assert_array_equal(space.canonicalize(genes), genes)


def test_ofa_active_block_changes_matter():
    space = get_space("ofa_mbv3")
    genes = space.parse(_ofa(d=(2,) * 5))
    changed = genes.copy()
    changed[ofa.KERNEL_GENES.start + 1] = 2  # block 1 of stage 0: active
    assert space.format(changed) != space.format(genes)
    assert space.flops(changed[None])[0] > space.flops(genes[None])[0]
    inactive = genes.copy()
    inactive[ofa.KERNEL_GENES.start + 2] = 2  # block 2 of stage 0: inactive at depth 2
    assert space.format(space.canonicalize(inactive[None])[0]) == space.format(genes)
    assert space.flops(inactive[None])[0] == space.flops(genes[None])[0]


# ------------------------------------------------------------------------ features
def _onehot_width(space) -> int:
    return int(space.cardinalities.sum())


def test_features_shape_dtype_finite(space):
    genes = space.table.genes
    x = space.features(genes)
    extra = 3 if space.name == "ofa_mbv3" else 2
    assert x.shape == (len(genes), _onehot_width(space) + extra)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(space.features(genes), x)  # deterministic
    assert space.features(genes[:0]).shape == (0, x.shape[1])


def test_one_hot_decodes_to_genes(space):
    genes = space.table.genes
    oh = space.one_hot(genes)
    assert oh.dtype == np.float32
    np.testing.assert_array_equal(oh.sum(axis=1), space.num_genes)
    assert set(np.unique(oh)) <= {0.0, 1.0}
    start = 0
    for j, card in enumerate(space.cardinalities):
        block = oh[:, start : start + card]
        np.testing.assert_array_equal(block.sum(axis=1), 1)
        np.testing.assert_array_equal(block.argmax(axis=1), genes[:, j])
        start += card


def test_feature_one_hot_part_row_sums(space):
    genes = space.table.genes
    x = space.features(genes)[:, : _onehot_width(space)]
    if space.name == "ofa_mbv3":
        depths = np.asarray(ofa.DEPTHS)[genes[:, 1:6]].sum(axis=1)
        expected = 1 + 5 + 2 * depths  # resolution, depths, kernel+expand of active blocks
        assert expected.min() >= 1 + 5 + 2 * 10 and expected.max() <= 1 + 5 + 2 * 20
    else:
        expected = np.full(len(genes), space.num_genes)
        np.testing.assert_array_equal(x, space.one_hot(genes))
    np.testing.assert_array_equal(x.sum(axis=1), expected)


def test_feature_cost_columns(space):
    genes = space.table.genes
    x = space.features(genes)
    np.testing.assert_allclose(x[:, -2], np.log1p(space.flops(genes)), rtol=1e-6)
    np.testing.assert_allclose(x[:, -1], np.log1p(space.params(genes)), rtol=1e-6)
    if space.name == "ofa_mbv3":
        res = np.asarray(ofa.RESOLUTIONS)[genes[:, 0]]
        np.testing.assert_allclose(x[:, -3], (res / 224.0) ** 2, rtol=1e-6)


def test_flops_params_positive_and_vectorised(space):
    genes = space.table.genes
    flops, params = space.flops(genes), space.params(genes)
    assert flops.shape == params.shape == (len(genes),)
    assert flops.dtype == params.dtype == np.float64
    assert (flops > 0).all() and (params > 0).all()
    assert np.isfinite(flops).all() and np.isfinite(params).all()
    for i in np.linspace(0, len(genes) - 1, 40).astype(int):
        assert space.flops(genes[i : i + 1])[0] == flops[i]
        assert space.params(genes[i : i + 1])[0] == params[i]
        np.testing.assert_array_equal(space.features(genes[i : i + 1])[0], space.features(genes)[i])
    # input dtype does not matter
    np.testing.assert_array_equal(space.flops(genes.astype(np.int64)), flops)


def test_flops_correlate_with_latency(space):
    """A sanity check that the analytic costs mean something: rank correlation with a GPU."""
    t = space.table
    device = {"nasbench201": "titanx_256", "fbnet": "titanx_64", "ofa_mbv3": "titan_rtx_64"}
    lat = t.device_column(device[space.name])
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    rho = np.corrcoef(rank(space.flops(t.genes)), rank(lat))[0, 1]
    assert rho > 0.5, rho


def test_nasbench201_costs_match_published_range():
    """NAS-Bench-201 reports 7.78 .. 220.11 MFLOPs and 0.073 .. 1.532 M params on CIFAR-10."""
    space = get_space("nasbench201")
    extremes = np.array([[0] * 6, [3] * 6], dtype=GENE_DTYPE)
    np.testing.assert_allclose(space.flops(extremes), [7.78e6, 220.11e6], rtol=2e-3)
    np.testing.assert_allclose(space.params(extremes), [0.0733e6, 1.5315e6], rtol=2e-3)
    flops = space.flops(space.table.genes)
    assert flops.min() == space.flops(extremes)[0] and flops.max() == space.flops(extremes)[1]


def test_nasbench201_flops_monotone():
    space = get_space("nasbench201")
    genes = space.table.genes
    ops = space.choices[0]
    c1, c3 = ops.index("nor_conv_1x1"), ops.index("nor_conv_3x3")
    base_f, base_p = space.flops(genes), space.params(genes)
    for j in range(6):
        has = genes[:, j] == c1
        up = genes[has].copy()
        up[:, j] = c3
        assert (space.flops(up) > base_f[has]).all()
        assert (space.params(up) > base_p[has]).all()
    # parameter-free ops cost the same
    free = [ops.index(o) for o in ("none", "skip_connect", "avg_pool_3x3")]
    costs = {space.flops(np.full((1, 6), o, dtype=GENE_DTYPE))[0] for o in free}
    assert len(costs) == 1
    # flops increase with the number of 3x3 convs, other edges fixed to none
    f = [space.flops(np.array([[c3] * k + [0] * (6 - k)], dtype=GENE_DTYPE))[0] for k in range(7)]
    assert all(a < b for a, b in itertools.pairwise(f))


def test_fbnet_flops_monotone():
    space = get_space("fbnet")
    genes = space.table.genes[:300]
    base = space.flops(genes)
    op = fb.OPS.index
    for small, big in [
        ("k3_e1", "k5_e1"),
        ("k3_e3", "k5_e3"),
        ("k3_e6", "k5_e6"),
        ("k3_e1", "k3_e3"),
        ("k3_e3", "k3_e6"),
        ("k5_e3", "k5_e6"),
        ("k3_e1_g2", "k3_e1"),
        ("k5_e1_g2", "k5_e1"),
        ("skip", "k3_e1"),
    ]:
        for j in (0, 1, 10, 21):
            lo, hi = genes.copy(), genes.copy()
            lo[:, j], hi[:, j] = op(small), op(big)
            assert (space.flops(hi) > space.flops(lo)).all(), (small, big, j)
            assert (space.params(hi) > space.params(lo)).all(), (small, big, j)
    assert (base > 0).all()


def test_fbnet_skip_is_free_only_where_shapes_match():
    space = get_space("fbnet")
    layout = fb.block_layout()
    assert len(layout) == 22
    skip = fb.OPS.index("skip")
    all_skip = np.full((1, 22), skip, dtype=GENE_DTYPE)
    for j, (c_in, c_out, stride, _) in enumerate(layout):
        g = all_skip.copy()
        g[0, j] = fb.OPS.index("k3_e1")
        assert space.flops(g)[0] > space.flops(all_skip)[0]
        assert (fb.block_cost("skip", c_in, c_out, stride, 8)[0] == 0) == (
            c_in == c_out and stride == 1
        )


def test_ofa_flops_monotone():
    space = get_space("ofa_mbv3")
    genes = space.table.genes[:300]
    base = space.flops(genes)
    active = ofa.active_mask(genes)
    for b in (0, 5, 19):
        for sl in (ofa.KERNEL_GENES, ofa.EXPAND_GENES):
            j = sl.start + b
            lo, hi = genes.copy(), genes.copy()
            lo[:, j], hi[:, j] = 0, 2
            diff = space.flops(hi) - space.flops(lo)
            assert (diff[active[:, b]] > 0).all()
            assert (diff[~active[:, b]] == 0).all()
    # larger resolution -> more flops, same params
    lo, hi = genes.copy(), genes.copy()
    lo[:, 0], hi[:, 0] = 0, len(ofa.RESOLUTIONS) - 1
    assert (space.flops(hi) > space.flops(lo)).all()
    np.testing.assert_array_equal(space.params(hi), space.params(lo))
    # deeper stage -> more flops and params
    for s in range(5):
        lo, hi = genes.copy(), genes.copy()
        lo[:, 1 + s], hi[:, 1 + s] = 0, 2
        assert (space.flops(hi) > space.flops(lo)).all()
        assert (space.params(hi) > space.params(lo)).all()
    assert (base > 0).all()


# ------------------------------------------------------------------------ sampling
def test_sample_in_range_canonical_reproducible(space):
    a = space.sample(1000, rng=123)
    assert a.shape == (1000, space.num_genes) and a.dtype == GENE_DTYPE
    assert ((a >= 0) & (a < space.cardinalities[None, :])).all()
    np.testing.assert_array_equal(space.validate(a), a)
    np.testing.assert_array_equal(space.canonicalize(a), a)
    np.testing.assert_array_equal(space.sample(1000, rng=123), a)
    np.testing.assert_array_equal(space.sample(1000, rng=np.random.default_rng(123)), a)
    assert not np.array_equal(space.sample(1000, rng=124), a)
    assert space.sample(0, rng=1).shape == (0, space.num_genes)
    # every choice of every gene shows up (uniform sampling over choices)
    for j, card in enumerate(space.cardinalities):
        if space.name == "ofa_mbv3" and j >= 6:
            continue  # canonicalisation folds inactive blocks onto choice 0
        assert len(np.unique(a[:, j])) == card
    # strings of samples round-trip
    np.testing.assert_array_equal(space.parse_many(space.format_many(a[:100])), a[:100])
