"""Vectorised string parsing and the native architecture formats (client_sdk.spaces.formats)."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk import _requests as rq
from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces import formats as F
from client_sdk.spaces import get_space

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")


def _invalid_at(
    index: int, call, *args, gene: int | None = None, match: str | None = None
) -> InvalidArchitecture:
    """``call(*args)`` raises ``InvalidArchitecture`` naming batch position ``index`` (and
    ``gene`` when given)."""
    with pytest.raises(InvalidArchitecture, match=match) as err:
        call(*args)
    assert err.value.index == index
    if gene is not None:
        assert err.value.gene == gene
    return err.value


def _declined_at(space, batch: list, index: int) -> None:
    """The vectorised parser declines ``batch``; the per-string one names ``batch[index]``."""
    assert F.fast_parse_many(space, batch) is None
    _invalid_at(index, space.parse_many, batch)


def _slow(space, archs):
    return np.array([space.parse(a, index=i) for i, a in enumerate(archs)]).reshape(
        len(archs), space.num_genes
    )


@pytest.mark.parametrize("name", SPACES)
def test_fast_parse_equals_per_string_parser(name: str) -> None:
    space = get_space(name)
    genes = space.sample(2000, rng=3)
    strings = space.format_many(genes)
    fast = F.fast_parse_many(space, strings)
    assert fast is not None, "canonical strings must take the vectorised path"
    np.testing.assert_array_equal(fast, genes)
    np.testing.assert_array_equal(fast, _slow(space, strings))
    table = space.table.genes[:3000]
    np.testing.assert_array_equal(F.fast_parse_many(space, space.format_many(table)), table)


@pytest.mark.parametrize("name", ["mobilenetv2", "proxyless"])
def test_fast_parse_of_spaces_from_definitions(name: str) -> None:
    """A definition's ``keyed`` (fixed-width labels) and ``joined`` strings take the
    vectorised path; non-canonical genes come back canonical; anything else falls back."""
    space = get_space(name)
    raw = np.random.default_rng(5).integers(0, space.cardinalities, size=(800, space.num_genes))
    strings = [space.format(row) for row in raw.astype(np.int16)]
    fast = F.fast_parse_many(space, strings)
    assert fast is not None
    np.testing.assert_array_equal(fast, _slow(space, strings))
    s = strings[3]
    for bad in (s + " ", s.replace("-", "--", 1), s[:-1] + "9", s[1:], "x" + s,
                " ".join(reversed(s.split()))):
        if bad == s:
            continue
        batch = [*strings[:3], bad, *strings[4:9]]
        got = F.fast_parse_many(space, batch)
        if got is not None:  # only ever what the per-string parser gives
            np.testing.assert_array_equal(got, _slow(space, batch))


@pytest.mark.parametrize("name", SPACES)
def test_non_canonical_batches_fall_back_and_errors_are_precise(name: str) -> None:
    space = get_space(name)
    genes = space.sample(6, rng=4)
    strings = space.format_many(genes)
    lenient = list(strings)
    lenient[4] = f"  {lenient[4]}\n"  # accepted by the per-string parser only
    assert F.fast_parse_many(space, lenient) is None
    np.testing.assert_array_equal(space.parse_many(lenient), genes)
    for bad in (strings[2][:-1], strings[2] + "x", strings[2].replace("3", "\x01", 1), "", 7):
        _declined_at(space, [*strings[:2], bad, *strings[3:]], 2)


def test_fbnet_tokens_must_be_whole_op_names() -> None:
    space = get_space("fbnet")
    ops = space.format_many(space.sample(3, rng=0))
    for bad in (ops[1].replace("skip", "skipx", 1), "k3_e1-" + ops[1], ops[1] + "-",
                ops[1].replace("-", "--", 1), ops[1].replace("k", "K", 1)):
        if bad == ops[1]:
            continue
        _declined_at(space, [ops[0], bad, ops[2]], 1)


def test_nats_bench_indices_are_the_table_index() -> None:
    space = get_space("nasbench201")
    assert np.array_equal(space.table.index, np.arange(15625))
    # NATS-Bench topology index 0 and 1 (official strings)
    g = F.to_genes(space, [0, 1])
    assert space.format_many(g) == [
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
        "skip_connect~2|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
        "skip_connect~2|",
    ]
    idx = np.array([15624, 0, 431, 9])
    np.testing.assert_array_equal(F.from_genes(space, F.to_genes(space, idx), "index"), idx)
    _invalid_at(1, F.to_genes, space, [3, 15625], match="15625")
    _invalid_at(1, F.to_genes, space, [3, "x"])


@pytest.mark.parametrize("name", SPACES)
def test_round_trips_through_every_form(name: str) -> None:
    space = get_space(name)
    genes = space.table.genes[::97][:40]
    forms = ["genes", "string", "index", "ops"] + (["ofa"] if name == "ofa_mbv3" else [])
    for form in forms:
        native = F.from_genes(space, genes, form)
        np.testing.assert_array_equal(F.to_genes(space, native), genes, err_msg=form)
        np.testing.assert_array_equal(F.to_genes(space, native, form=form), genes)


def test_fbnet_op_lists_and_errors() -> None:
    space = get_space("fbnet")
    ops = F.from_genes(space, space.sample(3, rng=1), "ops")
    assert len(ops[0]) == 22 and all(isinstance(o, str) for o in ops[0])
    bad = [list(o) for o in ops]
    bad[2][7] = "k7_e6"
    _invalid_at(2, F.to_genes, space, bad, gene=7, match="k7_e6")
    _invalid_at(1, F.to_genes, space, [ops[0], ops[1][:21]], match="22")


def test_ofa_subnet_dicts() -> None:
    space = get_space("ofa_mbv3")
    genes = space.sample(4, rng=2)
    subnets = F.from_genes(space, genes, "ofa")
    assert set(subnets[0]) == {"ks", "e", "d", "r"}
    assert len(subnets[0]["ks"]) == 20 and len(subnets[0]["d"]) == 5
    alt = [{"ks": s["ks"], "e": s["e"], "d": s["d"], "image_size": s["r"][0]} for s in subnets]
    np.testing.assert_array_equal(F.to_genes(space, alt), genes)
    cases = [
        ({**subnets[0], "ks": subnets[0]["ks"][:19]}, "'ks'", 6),
        ({**subnets[0], "e": [*subnets[0]["e"][:3], 5, *subnets[0]["e"][4:]]}, "e\\[3\\]", 29),
        ({**subnets[0], "r": [225]}, "'r'", 0),
        ({k: v for k, v in subnets[0].items() if k != "r"}, "image_size", 0),
        ({**subnets[0], "d": [2, 3, 4, 5, 2]}, "d\\[3\\]", 4),
    ]
    for bad, match, gene in cases:
        _invalid_at(1, F.to_genes, space, [subnets[1], bad], gene=gene, match=match)
    several = {**subnets[1], "image_size": 224}
    _invalid_at(1, F.to_genes, space, [subnets[0], several], match="several")
    _invalid_at(1, F.to_genes, space, [subnets[0], {**subnets[1], "ks": "3"}], match="'ks'")
    for value in (3.0, "3", True):  # never cast silently
        ks = [value, *subnets[1]["ks"][1:]]
        batch = [subnets[0], {**subnets[1], "ks": ks}]
        _invalid_at(1, F.to_genes, space, batch, gene=6, match="ks\\[0\\]")
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3"):
        F.to_genes(get_space("nasbench201"), subnets)


def test_sdk_sends_parsed_strings_and_native_forms_packed() -> None:
    space = get_space("nasbench201")
    genes = space.sample(50, rng=5)
    for archs in (space.format_many(genes), F.from_genes(space, genes, "index"),
                  F.from_genes(space, genes, "index").tolist()):
        msg, n = rq.archs_pb(archs, "nasbench201")
        assert n == 50 and msg.WhichOneof("encoding") == "packed"
        got = np.frombuffer(msg.packed.genes, dtype=np.uint8).reshape(n, 6)
        np.testing.assert_array_equal(got, genes)
    # unknown space locally: strings travel as strings (the server decides)
    msg, _ = rq.archs_pb(space.format_many(genes), "not-a-space")
    assert msg.WhichOneof("encoding") == "strings"
    bad = space.format_many(genes)
    bad[17] = "|conv~0|"
    assert "archs[17]" in _invalid_at(17, rq.archs_pb, bad, "nasbench201").message
