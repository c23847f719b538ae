"""The space language: a search space as data (YAML or JSON), validated with clear errors.

A definition is a macro skeleton — ``input``, ``stem``, ``stages``, ``head`` — with choices:

```yaml
name: my_space                    # [a-z0-9_]+
description: free text
input: {channels: 3, resolution: [192, 224]}   # a list is a gene ``resolution``
width: [0.75, 1.0]                # optional global width multiplier (a gene ``width``)
stem:                             # fixed layers
  - {op: conv, out: 32, kernel: 3, stride: 2, act: relu6}
stages:
  - out: 24                       # output channels (times ``width``)
    stride: 2                     # stride of the stage's first block
    depth: [2, 3, 4]              # an int, or a list: a gene ``depth{s}``
    block: {op: mbconv, act: relu6, se: false}     # fields every block shares
    choose:                       # per block position, one gene per key
      kernel: [3, 5, 7]
      expand: [3, 6]
    # or named candidate operations (one gene ``op{p}`` per block):
    # ops: [{name: k3_e3, kernel: 3, expand: 3}, {name: skip, op: skip}]
    # first_ops: [...]            # optional: other candidates for the stage's first block
head:
  - {op: conv, out: 1280, kernel: 1, act: relu6}
  - {op: pool}
  - {op: linear, out: 1000}
format: keyed                     # or joined, or {style: keyed, keys: {resolution: r},
                                  # native: ofa_subnet}
gene_prefix: {op: block}          # optional: gene names block0.. instead of op0..
table: {name: fbnet, genes: {op: "block{p}"}}  # bundled spaces only: their measured table
```

Operations: ``conv`` (kernel, stride, groups, act; BN folded), ``mbconv`` (inverted residual:
expand, kernel, groups of the 1x1 convs with a channel shuffle when > 1, se, act,
``expand_conv: auto|always``: ``auto`` omits the 1x1 expansion when ``expand`` is 1, as
MobileNet-V2 does), ``skip`` (identity, or a strided 1x1 conv where the shape changes),
``pool`` (global average pooling), ``linear`` (out; ``bias: true|false``, default true;
``act``, default ``none``; head only), ``norm`` (a standalone BatchNorm + act, stem or head
before the pool). A residual add joins a block whose input and output shapes match.

Cell spaces (``cell``: a fixed DAG whose edges are the choices, repeated through stages with
``reduction`` blocks; NAS-Bench-201): ``spaces.language_cells``, string style ``cell``.

String forms (``format``): ``keyed`` gives one ``key=v-v-..`` token per gene group
(``resolution``, ``width``, ``depth``, then the choice keys in gene order), ``joined`` the
groups' values joined by '-' and separated by spaces, no keys. The mapping form
``{style: keyed, keys: {resolution: r, depth: d}}`` renames the keys of the string (here
``r=224 d=2-3-4 ...``); groups not listed keep their name. ``native: ofa_subnet`` (or a
list) opts in to a native form beyond genes, strings, op-name lists and table indices: the
``ofa`` library's subnet dicts (``spaces.format_ofa``; OFA-MobileNetV3's definition does).
The genes of numeric groups (``ORDINAL_GROUPS``) are ordinal: a search mutation may step them.

Gene names (``gene_prefix``): a gene is named after its group, ``resolution``, ``width``,
``depth{s}`` or ``{key}{p}`` (``op``, ``kernel``, ...); ``gene_prefix: {op: block}`` names
the op genes ``block0, block1, ...`` instead (``resolution`` / ``width`` are renamed
whole). Names must stay unique. Everything the product needs — genes, strings, validation,
sampling, layer lists, descriptors, FLOPs, the torch network — derives from the definition
(``spaces.defined.DefinedSpace``, ``measure.defined``).

Measured table (``table``, the bundled spaces' own definitions only): ``name`` is a table
under ``client_sdk/data`` and ``genes`` maps every gene group to its column(s): a template
with ``{p}`` is one column per gene (``{p}`` the gene's number: ``block{p}`` -> ``block0``,
``block1``, ...), one without is a single column holding the group's values joined by '-'
(``depth: depths`` -> ``2-3-4-2-3``). Cells hold the choice labels of the string form;
``string: <column>`` instead reads each architecture's string, ``accuracy: {metric:
column}`` the served accuracies (``spaces.table_hook``).

Model features (``features``, optional): every space's are the one-hot genes, log FLOPs and
log params; ``{inactive: zero}`` zeroes the one-hot of the genes ``canonicalize`` zeroes
(blocks past their stage's depth, the other genes of a ``skip``) and ``{resolution: area}``
adds ``(resolution / largest) ** 2`` before the log costs: OFA-MobileNetV3's features.
They are part of a served model's cache key: changing them retrains its proxy.

Errors are ``InvalidSpaceDefinition`` with the path inside the definition, e.g.
``stages[2].choose.kernel[1]: must be a positive odd integer, got 4``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from client_sdk.errors import InvalidSpaceDefinition
from client_sdk.spaces import table_hook
from client_sdk.spaces.language_cells import (
    Cell,
    check_cell_definition,
    parse_cell,
    parse_cell_stage,
)
from client_sdk.spaces.table_hook import TableHook

MAX_DEFINITION_BYTES = 1024 * 1024  # a network space of ~100 ResNet-size layer lists
MAX_GENES = 512
MAX_CHOICES = 256  # per gene: packed genes travel as one byte each (oracle.proto)
MAX_BLOCKS = 256
MAX_CHANNELS = 1 << 16
OPS = ("conv", "mbconv", "skip", "pool", "linear", "norm")
ACTS = ("relu", "relu6", "hswish", "swish", "sigmoid", "none")
BLOCK_FIELDS = {"op", "kernel", "expand", "groups", "se", "act", "expand_conv", "name"}
CHOOSABLE = ("op", "kernel", "expand", "groups", "se", "act")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LABEL = re.compile(r"^[A-Za-z0-9_.+]{1,32}$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
GROUP_KEYS = ("resolution", "width", "depth", *CHOOSABLE)
STYLES = ("keyed", "joined", "cell")
#: gene groups of ordered numbers: a +-1 step is a small change (``ordinal_genes``)
ORDINAL_GROUPS = ("resolution", "width", "depth", "kernel", "expand", "groups")
#: native architecture forms a definition may opt in to (``format.native``, ``spaces.formats``)
NATIVE_FORMS = ("ofa_subnet",)


@dataclass(frozen=True)
class Block:
    """One block's resolved settings (a fixed block, or one choice of a position)."""

    op: str = "mbconv"
    kernel: int = 3
    expand: float = 1.0
    groups: int = 1
    se: bool = False
    act: str = "relu"
    expand_conv: str = "auto"
    stride: int = 1
    out: int = 0
    bias: bool = True  # linear only


@dataclass(frozen=True)
class Stage:
    out: int
    stride: int
    depths: tuple[int, ...]  # one value: fixed depth
    block: Mapping[str, Any]
    factors: tuple[tuple[str, tuple[Any, ...]], ...]  # ("kernel", (3, 5, 7)) ...
    ops: tuple[tuple[str, Mapping[str, Any]], ...] | None  # named candidates
    first_ops: tuple[tuple[str, Mapping[str, Any]], ...] | None
    reduction: str | None = None  # a cell space's block before the stage's cells

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def candidates(self, index: int) -> tuple[tuple[str, Mapping[str, Any]], ...] | None:
        """The named candidates of the stage's block ``index`` (``first_ops`` for the first
        block where given), or None when the stage has none."""
        return self.first_ops if index == 0 and self.first_ops else self.ops


@dataclass(frozen=True)
class Definition:
    name: str
    description: str
    channels: int
    resolutions: tuple[int, ...]
    widths: tuple[float, ...]
    stem: tuple[Block, ...]
    stages: tuple[Stage, ...]
    head: tuple[Block, ...]
    format: str  # "keyed" | "joined" | "cell"
    source: Mapping[str, Any] = field(repr=False, default_factory=dict)
    format_keys: Mapping[str, str] = field(default_factory=dict)  # group -> string key
    gene_prefix: Mapping[str, str] = field(default_factory=dict)  # group -> gene name prefix
    table: TableHook | None = None  # the bundled measured table (bundled definitions only)
    features: Mapping[str, str] = field(default_factory=dict)  # model feature options
    cell: Cell | None = None  # a cell space's cell (``spaces.language_cells``)
    format_example: str | None = None  # a cell string form's example, shown in errors
    native: tuple[str, ...] = ()  # native forms the space accepts (``NATIVE_FORMS``)

    def canonical_json(self) -> str:
        """The definition as canonical JSON: the identity of a registered space."""
        return json.dumps(self.source, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------- loading
def load_text(text: str | bytes, what: str = "definition") -> dict:
    """YAML or JSON text -> dict, refusing huge files and YAML aliases (no bombs)."""
    if isinstance(text, bytes):
        if len(text) > MAX_DEFINITION_BYTES:
            raise InvalidSpaceDefinition("", f"{what} is {len(text)} bytes; at most "
                                         f"{MAX_DEFINITION_BYTES} allowed")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidSpaceDefinition("", f"{what} is not UTF-8: {exc}") from None
    if len(text.encode("utf-8")) > MAX_DEFINITION_BYTES:
        raise InvalidSpaceDefinition("", f"{what} is larger than {MAX_DEFINITION_BYTES} bytes")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpaceDefinition("", f"{what} is not valid JSON: {exc}") from None
    else:
        data = _load_yaml(text, what)
    if not isinstance(data, dict):
        raise InvalidSpaceDefinition("", f"{what} must be a mapping, got {type(data).__name__}")
    return data


def _load_yaml(text: str, what: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a base dependency
        raise InvalidSpaceDefinition("", f"{what}: YAML needs pyyaml; give JSON") from None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise InvalidSpaceDefinition("", f"{what} uses YAML anchors/aliases, which are "
                                             "not allowed (write the values out)")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidSpaceDefinition("", f"{what} is not valid YAML: {exc}") from None


# ------------------------------------------------------------------ validation
def _int(v: Any, path: str, lo: int = 1, hi: int = MAX_CHANNELS, odd: bool = False) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi or (odd and v % 2 == 0):
        kind = "a positive odd integer" if odd else f"an integer in {lo}..{hi}"
        raise InvalidSpaceDefinition(path, f"must be {kind}, got {v!r}")
    return v


def _num(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 64 or not \
            math.isfinite(v):
        raise InvalidSpaceDefinition(path, f"must be a number in (0, 64], got {v!r}")
    return float(v)


def _list(v: Any, path: str, allow_scalar: bool = True) -> list:
    if isinstance(v, list):
        if not v:
            raise InvalidSpaceDefinition(path, "the choice list is empty")
        if len(v) > MAX_CHOICES:
            raise InvalidSpaceDefinition(path, f"{len(v)} choices; at most {MAX_CHOICES}")
        return v
    if allow_scalar:
        return [v]
    raise InvalidSpaceDefinition(path, f"must be a list, got {type(v).__name__}")


def _keys(d: Any, path: str, allowed: set[str] | None, required: tuple[str, ...] = ()) -> dict:
    """``d`` as a mapping of ``allowed`` fields (None: any) with the ``required`` ones."""
    if not isinstance(d, dict):
        raise InvalidSpaceDefinition(path, f"must be a mapping, got {type(d).__name__}")
    for k in d:
        if allowed is not None and k not in allowed:
            raise InvalidSpaceDefinition(f"{path}.{k}" if path else str(k),
                                         f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for k in required:
        if k not in d:
            raise InvalidSpaceDefinition(f"{path}.{k}" if path else k, "is required")
    return d


def check_field(key: str, v: Any, path: str) -> Any:
    """One block field's value, validated."""
    if key == "op":
        if v not in OPS:
            raise InvalidSpaceDefinition(path, f"unknown op {v!r} (known: {', '.join(OPS)})")
        return v
    if key == "kernel":
        return _int(v, path, 1, 15, odd=True)
    if key in ("groups", "stride", "out"):
        return _int(v, path, 1, MAX_CHANNELS if key != "stride" else 4)
    if key == "expand":
        return _num(v, path)
    if key == "se":
        if not isinstance(v, bool):
            raise InvalidSpaceDefinition(path, f"must be true or false, got {v!r}")
        return v
    if key == "act":
        if v not in ACTS:
            raise InvalidSpaceDefinition(path, f"unknown activation {v!r} (known: "
                                         f"{', '.join(ACTS)})")
        return v
    if key == "expand_conv":
        if v not in ("auto", "always"):
            raise InvalidSpaceDefinition(path, f"must be 'auto' or 'always', got {v!r}")
        return v
    if key == "name":
        if not isinstance(v, str) or not _LABEL.match(v):
            raise InvalidSpaceDefinition(path, f"must be 1-32 characters of [A-Za-z0-9_.+], "
                                         f"got {v!r}")
        return v
    raise InvalidSpaceDefinition(path, "unknown field")


def _fixed_layer(d: Any, path: str) -> Block:
    _keys(d, path, BLOCK_FIELDS | {"stride", "out", "bias"}, ("op",))
    if d["op"] == "norm":  # a standalone BatchNorm (+ act): keeps the channels
        _keys(d, path, {"op", "act"})
    vals = {k: check_field(k, v, f"{path}.{k}") for k, v in d.items()
            if k not in ("name", "bias")}
    if vals["op"] in ("conv", "linear", "mbconv") and "out" not in vals:
        raise InvalidSpaceDefinition(f"{path}.out", f"is required for op {vals['op']}")
    if "bias" in d:
        if vals["op"] != "linear":
            raise InvalidSpaceDefinition(f"{path}.bias", f"only a linear takes 'bias', not "
                                         f"{vals['op']}")
        if not isinstance(d["bias"], bool):
            raise InvalidSpaceDefinition(f"{path}.bias", f"must be true or false, got "
                                         f"{d['bias']!r}")
        vals["bias"] = d["bias"]
    if vals["op"] == "linear":
        vals.setdefault("act", "none")
    return Block(**vals)


def _format(v: Any, default: str) -> tuple[str, dict[str, str], str | None, tuple[str, ...]]:
    """``format``: a style (``keyed`` | ``joined`` | ``cell``) or ``{style, keys: {group:
    key}, example, native}`` -> (style, keys, example, native forms)."""
    if isinstance(v, str):
        style, keys, d = v, {}, {}
    else:
        d = _keys(v, "format", {"style", "keys", "example", "native"})
        style, keys = d.get("style", default), _keys(d.get("keys", {}), "format.keys",
                                                       set(GROUP_KEYS))
    path = "format" if isinstance(v, str) else "format.style"
    if style not in STYLES:
        raise InvalidSpaceDefinition(path, f"must be 'keyed', 'joined' or 'cell', got {style!r}")
    if keys and style != "keyed":
        raise InvalidSpaceDefinition("format.keys", "only a keyed format has keys")
    seen: dict[str, str] = {}
    for group, key in keys.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidSpaceDefinition(f"format.keys.{group}", "must be 1-32 characters of "
                                         f"[A-Za-z0-9_] starting with a letter, got {key!r}")
        if key in seen:
            raise InvalidSpaceDefinition(f"format.keys.{group}", f"key {key!r} is also the "
                                         f"key of {seen[key]!r}")
        seen[key] = group
    example = d.get("example")
    if example is not None and (style != "cell" or not isinstance(example, str)
                                or not 0 < len(example) <= 200):
        raise InvalidSpaceDefinition("format.example", "only a cell format has an example: "
                                     f"a string of 1-200 characters, got {example!r}")
    native = d.get("native", [])
    native = [native] if isinstance(native, str) else native
    if not isinstance(native, list) or any(n not in NATIVE_FORMS for n in native):
        raise InvalidSpaceDefinition("format.native", f"must be one or a list of "
                                     f"{', '.join(NATIVE_FORMS)}, got {d.get('native')!r}")
    return style, dict(keys), example, tuple(dict.fromkeys(native))


def _gene_prefix(v: Any) -> dict[str, str]:
    """``gene_prefix``: ``{group: prefix}``, e.g. ``{op: block}``."""
    d = _keys(v, "gene_prefix", set(GROUP_KEYS))
    for group, prefix in d.items():
        if not isinstance(prefix, str) or not _NAME.match(prefix) or len(prefix) > 32:
            raise InvalidSpaceDefinition(f"gene_prefix.{group}", "must match "
                                         f"[a-z][a-z0-9_]{{0,31}}, got {prefix!r}")
    return dict(d)


FEATURE_OPTIONS = {"inactive": ("keep", "zero"), "resolution": ("none", "area")}


def _features(v: Any) -> dict[str, str]:
    """``features``: ``{inactive: keep|zero, resolution: none|area}`` (defaults first)."""
    d = _keys(v, "features", set(FEATURE_OPTIONS))
    for key, value in d.items():
        if value not in FEATURE_OPTIONS[key]:
            raise InvalidSpaceDefinition(f"features.{key}", f"must be one of "
                                         f"{', '.join(FEATURE_OPTIONS[key])}, got {value!r}")
    return {k: v for k, v in d.items() if v != FEATURE_OPTIONS[k][0]}


def _candidates(v: Any, path: str, shared: dict) -> tuple[tuple[str, dict], ...]:
    out, seen = [], set()
    for i, cand in enumerate(_list(v, path, allow_scalar=False)):
        p = f"{path}[{i}]"
        _keys(cand, p, BLOCK_FIELDS, ("name",))
        vals = {k: check_field(k, x, f"{p}.{k}") for k, x in cand.items()}
        name = vals.pop("name")
        if name in seen:
            raise InvalidSpaceDefinition(f"{p}.name", f"duplicate candidate name {name!r}")
        seen.add(name)
        op = vals.get("op", shared.get("op", "mbconv"))
        if op in ("pool", "linear", "norm"):
            raise InvalidSpaceDefinition(f"{p}.op", f"{op} cannot be a block choice")
        out.append((name, vals))
    return tuple(out)


def _stage(d: Any, path: str) -> Stage:
    _keys(d, path, {"out", "stride", "depth", "block", "choose", "ops", "first_ops"},
          ("out",))
    out = _int(d["out"], f"{path}.out")
    stride = _int(d.get("stride", 1), f"{path}.stride", 1, 4)
    depths = tuple(_int(x, f"{path}.depth[{i}]" if isinstance(d.get("depth"), list)
                        else f"{path}.depth", 1, 64)
                   for i, x in enumerate(_list(d.get("depth", 1), f"{path}.depth")))
    if len(set(depths)) != len(depths):
        raise InvalidSpaceDefinition(f"{path}.depth", f"repeated values in {list(depths)}")
    block = _keys(d.get("block", {}), f"{path}.block", BLOCK_FIELDS - {"name"})
    block = {k: check_field(k, v, f"{path}.block.{k}") for k, v in block.items()}
    if block.get("op") in ("pool", "linear", "norm"):
        raise InvalidSpaceDefinition(f"{path}.block.op", f"{block['op']} is not a block op")
    choose = _keys(d.get("choose", {}), f"{path}.choose", set(CHOOSABLE) - {"op"})
    factors = []
    # the genes' order follows CHOOSABLE, never the mapping's key order: a definition and
    # its canonical JSON (sorted keys) must give the same genes
    for key, values in sorted(choose.items(), key=lambda kv: CHOOSABLE.index(kv[0])):
        vals = tuple(check_field(key, v, f"{path}.choose.{key}[{i}]")
                     for i, v in enumerate(_list(values, f"{path}.choose.{key}", False)))
        if len(set(vals)) != len(vals):
            raise InvalidSpaceDefinition(f"{path}.choose.{key}", f"repeated values {list(vals)}")
        factors.append((key, vals))
    ops = _candidates(d["ops"], f"{path}.ops", block) if "ops" in d else None
    first = _candidates(d["first_ops"], f"{path}.first_ops", block) if "first_ops" in d else None
    if first is not None and ops is None:
        raise InvalidSpaceDefinition(f"{path}.first_ops", "needs 'ops' for the other blocks")
    if ops is not None:
        clash = {k for k in choose if any(k in c for _, c in (*ops, *(first or ())))}
        if clash:
            k = sorted(clash)[0]
            raise InvalidSpaceDefinition(f"{path}.choose.{k}", "is also set by a candidate "
                                         "in 'ops' (choose it in one place)")
    return Stage(out, stride, depths, block, tuple(factors), ops, first)


def parse_definition(data: Mapping[str, Any] | str | bytes) -> Definition:
    """Validate a definition (mapping, or YAML/JSON text) into a ``Definition``, checked as
    a whole (``spaces.defined.check_consistency``)."""
    from client_sdk.spaces.defined import check_consistency

    if isinstance(data, str | bytes):
        data = load_text(data)
    definition = validate_definition(data)
    check_consistency(definition)
    return definition


def validate_definition(data: Mapping[str, Any]) -> Definition:
    """The field-by-field checks of a definition mapping (not the whole-space ones)."""
    d = _keys(dict(data), "", {"name", "description", "input", "width", "stem", "stages",
                               "head", "format", "gene_prefix", "table", "features", "cell"},
              ("name", "input", "stages", "head"))
    name = d["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidSpaceDefinition("name", f"must match [a-z][a-z0-9_]{{0,63}}, got {name!r}")
    desc = d.get("description", "")
    if not isinstance(desc, str) or len(desc) > 1000:
        raise InvalidSpaceDefinition("description", "must be a string of at most 1000 chars")
    inp = _keys(d["input"], "input", {"channels", "resolution"}, ("resolution",))
    channels = _int(inp.get("channels", 3), "input.channels", 1, 64)
    res_list = _list(inp["resolution"], "input.resolution")
    resolutions = tuple(_int(r, f"input.resolution[{i}]" if isinstance(inp["resolution"], list)
                             else "input.resolution", 8, 4096) for i, r in enumerate(res_list))
    widths = tuple(_num(w, f"width[{i}]" if isinstance(d.get("width"), list) else "width")
                   for i, w in enumerate(_list(d.get("width", 1.0), "width")))
    for key, vals in (("input.resolution", resolutions), ("width", widths)):
        if len(set(vals)) != len(vals):
            raise InvalidSpaceDefinition(key, f"repeated values {list(vals)}")
    stem = tuple(_fixed_layer(x, f"stem[{i}]")
                 for i, x in enumerate(_list(d.get("stem", []) or [], "stem", False)
                                       if d.get("stem") else []))
    cell = parse_cell(d["cell"]) if "cell" in d else None
    stage = _stage if cell is None else parse_cell_stage
    stages = tuple(stage(x, f"stages[{i}]")
                   for i, x in enumerate(_list(d["stages"], "stages", False)))
    head = tuple(_fixed_layer(x, f"head[{i}]")
                 for i, x in enumerate(_list(d["head"], "head", False)))
    style = "keyed" if cell is None else "cell"
    fmt, format_keys, example, native = _format(d.get("format", style), style)
    if fmt == "cell" and cell is None:
        raise InvalidSpaceDefinition("format", "only a cell space (with a 'cell') has cell "
                                     "strings")
    prefixes = _gene_prefix(d.get("gene_prefix", {}))
    table = table_hook.parse(d["table"]) if "table" in d else None
    features = _features(d.get("features", {}))
    out = Definition(name, desc, channels, resolutions, widths, stem, stages, head, fmt,
                     json.loads(json.dumps(d)), format_keys, prefixes, table, features, cell,
                     example, native)
    if cell is not None:
        check_cell_definition(d, out)
    return out
