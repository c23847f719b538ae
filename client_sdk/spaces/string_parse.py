"""Vectorised parsing of batches of architecture strings (``parse_many``).

Per string form: the ``cell`` strings of a small cell space (NAS-Bench-201's) are looked
up whole in a dict of every canonical string (15,625 for NB-201); batches of a space with
a ``joined`` string form (FBNet: 22 op names joined by '-') are joined into one byte buffer
whose '-'/' '-separated tokens are matched as 8-byte keys (numpy searchsorted); the
``keyed`` strings of a space whose labels have one width per gene (OFA's ``r=.. d=.. k=..
e=..``, MobileNet-V2's) are fixed-width, read as an ``(n, width)`` byte matrix checked
against the canonical template. A batch that is not exactly canonical (extra spaces, other field
order, an error) returns ``None`` from ``fast_parse_many`` and ``parse_many`` falls back to
the per-string parser, which accepts the lenient forms and raises the precise
``InvalidArchitecture``. So the fast path never changes what is accepted, only its speed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np

from client_sdk.spaces.base import GENE_DTYPE, SearchSpace

_SEP = 0x1F  # record separator of the joined buffer (a control char: never valid input)


def _joined(archs: Sequence[str]) -> np.ndarray | None:
    """The batch as one uint8 buffer, records separated by ``_SEP``; None when an element
    is not a string, not ASCII, or holds a control character."""
    if not all(type(a) is str for a in archs):
        return None
    try:
        raw = "\x1f".join(archs).encode("ascii")
    except UnicodeEncodeError:
        return None
    buf = np.frombuffer(raw, dtype=np.uint8)
    if np.count_nonzero(buf < 0x20) != len(archs) - 1:
        return None
    return buf


def _matrix(buf: np.ndarray, n: int, width: int) -> np.ndarray | None:
    """``(n, width)`` view of ``n`` fixed-width records joined by ``_SEP``."""
    if buf.size != n * (width + 1) - 1:
        return None
    mat = np.append(buf, np.uint8(_SEP)).reshape(n, width + 1)
    if not np.all(mat[:, width] == _SEP):
        return None
    return mat[:, :width]


#: a cell space up to this size parses by whole-string lookup (NB-201: 15,625 strings)
MAX_LOOKUP = 1 << 16


@functools.lru_cache(maxsize=16)
def _lookup_plan(space: SearchSpace) -> tuple[dict[str, int], np.ndarray] | None:
    """Every canonical string of a small space with a ``cell`` string form -> its row of
    all gene vectors (built once), or None."""
    definition = getattr(space, "definition", None)
    if getattr(definition, "format", None) != "cell" or space.space_size > MAX_LOOKUP:
        return None
    card = space.cardinalities.astype(np.int64)
    radix = np.concatenate([np.cumprod(card[::-1])[::-1][1:], [1]])
    codes = np.arange(space.space_size, dtype=np.int64)
    genes = ((codes[:, None] // radix[None, :]) % card[None, :]).astype(GENE_DTYPE)
    strings = space.format_many(genes)
    return dict(zip(strings, codes.tolist(), strict=True)), genes


def _parse_lookup(space: SearchSpace, archs: Sequence[str]) -> np.ndarray | None:
    plan = _lookup_plan(space)
    if plan is None:
        return None
    lut, genes = plan
    codes = np.fromiter(map(lut.get, archs, itertools.repeat(-1)), dtype=np.int64,
                        count=len(archs))
    if codes.size and codes.min() < 0:
        return None
    return genes[codes]


def _token_keys(names: Sequence[str], width: int) -> np.ndarray:
    out = np.zeros((len(names), width), dtype=np.uint8)
    for i, name in enumerate(names):
        out[i, : len(name)] = np.frombuffer(name.encode("ascii"), dtype=np.uint8)
    return out.view(f"<u{width}" if width in (1, 2, 4, 8) else np.void).ravel()


#: ``_BYTE_MASKS[k]``: the low ``k`` bytes of a uint64 set
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


@functools.lru_cache(maxsize=64)
def _joined_plan(space: SearchSpace) -> tuple | None:
    """What ``_parse_joined`` needs of a space from a definition with a ``joined`` string
    form, or None (not such a space, or a choice label longer than 8 bytes).

    (delimiters of one record: '-' within a gene group, ' ' between groups, then the record
    separator; gene column of each token; per vocabulary: its sorted 8-byte keys, their
    choice indices and the token slots it reads).
    """
    definition = getattr(space, "definition", None)
    if getattr(definition, "format", None) != "joined":
        return None
    order: list[int] = []
    delims: list[int] = []
    for _, cols in space._string_groups:
        if order:
            delims.append(ord(" "))
        delims += [ord("-")] * (len(cols) - 1)
        order += cols
    if any(len(c) > 8 for j in order for c in space.choices[j]):
        return None
    vocabs: dict[tuple[str, ...], list[int]] = {}
    for k, j in enumerate(order):
        vocabs.setdefault(space.choices[j], []).append(k)
    lookups = []
    for vocab, slots in vocabs.items():
        keys = _token_keys(vocab, 8)
        srt = np.argsort(keys)
        lookups.append((keys[srt], srt.astype(GENE_DTYPE), np.asarray(slots)))
    return np.array([*delims, _SEP], dtype=np.uint8), np.asarray(order), lookups


def _parse_joined(space: SearchSpace, archs: Sequence[str]) -> np.ndarray | None:
    """A ``joined`` string form (FBNet's 22 op names joined by '-'): tokens between the
    delimiters matched as 8-byte keys (vectorised); None unless every string is canonical."""
    plan = _joined_plan(space)
    if plan is None:
        return None
    pattern, order, lookups = plan
    n, per = len(archs), len(order)
    buf = _joined(archs)
    if buf is None:
        return None
    delim = np.flatnonzero((buf == ord("-")) | (buf == ord(" ")) | (buf == _SEP))
    if delim.size != n * per - 1:
        return None
    if not (np.append(buf[delim], pattern[-1]).reshape(n, per) == pattern).all():
        return None  # the delimiters of each record, in order (separators after each)
    start = np.concatenate([[0], delim + 1])
    end = np.concatenate([delim, [buf.size]])
    length = end - start
    width = 8
    if length.min() < 1 or length.max() > width:
        return None
    # each token's first 8 bytes as one little-endian uint64 (an unaligned strided view of
    # the padded buffer), bytes past the token masked off
    pad = np.concatenate([buf, np.zeros(width, dtype=np.uint8)])
    u64 = np.ndarray(shape=(buf.size + 1,), dtype="<u8", buffer=pad, strides=(1,))
    keys = (u64[start] & _BYTE_MASKS[length]).reshape(n, per)
    tokens = np.empty((n, per), dtype=GENE_DTYPE)
    for sorted_keys, choice, slots in lookups:
        got = keys if len(slots) == per else keys[:, slots]
        pos = np.minimum(np.searchsorted(sorted_keys, got), len(sorted_keys) - 1)
        if not np.array_equal(sorted_keys[pos], got):
            return None
        if len(slots) == per:
            tokens = choice[pos]
        else:
            tokens[:, slots] = choice[pos]
    if per == space.num_genes and np.array_equal(order, np.arange(per)):
        return space.canonicalize(tokens)  # tokens in gene order (FBNet)
    out = np.empty((n, space.num_genes), dtype=GENE_DTYPE)
    out[:, order] = tokens
    return space.canonicalize(out)


@functools.lru_cache(maxsize=64)
def _keyed_plan(space: SearchSpace) -> tuple | None:
    """What ``_parse_keyed`` needs of a space from a definition with a ``keyed`` string form
    whose every gene's labels have one width (at most 8 bytes; OFA's, MobileNet-V2's), else
    None: the record template (``#`` a label byte), then per vocabulary (labels, width):
    its sorted 8-byte keys, their choice indices, the label start columns and genes."""
    definition = getattr(space, "definition", None)
    if getattr(definition, "format", None) != "keyed":
        return None
    template, slots = "", []
    for key, cols in space._string_groups:
        template += (" " if template else "") + f"{space._string_keys[key]}="
        for i, j in enumerate(cols):
            widths = {len(c) for c in space.choices[j]}
            if len(widths) != 1 or max(widths) > 8:
                return None
            template += ("-" if i else "")
            slots.append((len(template), j, widths.pop()))
            template += "#" * slots[-1][2]
    vocabs: dict[tuple[tuple[str, ...], int], list[tuple[int, int]]] = {}
    for start, j, width in slots:
        vocabs.setdefault((space.choices[j], width), []).append((start, j))
    lookups = []
    for (vocab, width), where in vocabs.items():
        starts = np.array([a for a, _ in where])
        genes = np.array([j for _, j in where])
        if width == 1:  # one byte: a 256-entry lut read by the bytes themselves
            lut = np.full(256, -1, dtype=GENE_DTYPE)
            lut[[ord(v) for v in vocab]] = np.arange(len(vocab))
            lookups.append((lut, None, width, starts, genes))
            continue
        if width <= 4 and all(v.isdigit() and v.isascii() for v in vocab):
            lut = np.full(10**width, -1, dtype=GENE_DTYPE)  # decimal labels: value -> choice
            lut[[int(v) for v in vocab]] = np.arange(len(vocab))
            lookups.append((lut, None, width, starts, genes))
            continue
        keys = _token_keys(vocab, 8)
        srt = np.argsort(keys)
        lookups.append((keys[srt], srt.astype(GENE_DTYPE), width, starts, genes))
    tpl = np.frombuffer(template.encode("ascii"), dtype=np.uint8)
    return tpl, tpl != ord("#"), lookups


def _parse_keyed(space: SearchSpace, archs: Sequence[str]) -> np.ndarray | None:
    """A ``keyed`` string form of fixed-width labels, read as an ``(n, width)`` byte matrix
    checked against the canonical template; None unless every string is canonical."""
    plan = _keyed_plan(space)
    if plan is None:
        return None
    tpl, fixed, lookups = plan
    buf = _joined(archs)
    if buf is None:
        return None
    n = len(archs)
    mat = _matrix(buf, n, tpl.size)
    if mat is None or not (mat[:, fixed] == tpl[fixed]).all():
        return None
    out = np.zeros((n, space.num_genes), dtype=GENE_DTYPE)
    for sorted_keys, choice, width, starts, genes in lookups:
        if choice is None and width == 1:
            codes = sorted_keys.take(mat[:, starts])
            if codes.size and codes.min() < 0:
                return None
            out[:, genes] = codes
            continue
        if choice is None:  # decimal labels, read as numbers (OFA's resolution)
            digits = mat[:, starts].astype(np.int64) - ord("0")
            for i in range(1, width):
                digits = digits * 10 + (mat[:, starts + i].astype(np.int64) - ord("0"))
            if digits.size and (digits.min() < 0 or digits.max() >= len(sorted_keys)):
                return None
            codes = sorted_keys.take(digits)
            if codes.size and codes.min() < 0:
                return None
            out[:, genes] = codes
            continue
        raw = np.zeros((n, len(starts), 8), dtype=np.uint8)
        raw[:, :, :width] = mat[:, starts[:, None] + np.arange(width)[None, :]]
        keys = raw.view("<u8")[:, :, 0]
        pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        if not np.array_equal(sorted_keys[pos], keys):
            return None
        out[:, genes] = choice[pos]
    return space.canonicalize(out)


def fast_parse_many(space: SearchSpace, archs: Sequence[str]) -> np.ndarray | None:
    """Genes of a batch of canonical strings, or ``None`` (then parse one by one)."""
    if len(archs) == 0:
        return np.empty((0, space.num_genes), dtype=GENE_DTYPE)
    style = getattr(getattr(space, "definition", None), "format", None)
    if style == "cell":
        return _parse_lookup(space, archs)
    if style == "keyed":
        return _parse_keyed(space, archs)
    return _parse_joined(space, archs)


def parse_many(space: SearchSpace, archs: Sequence[str]) -> np.ndarray:
    """Strings -> canonical genes: the vectorised path, else the per-string parser."""
    genes = fast_parse_many(space, archs)
    if genes is not None:
        return genes
    out = np.empty((len(archs), space.num_genes), dtype=GENE_DTYPE)
    for i, arch in enumerate(archs):
        out[i] = space.parse(arch, index=i)
    return out
