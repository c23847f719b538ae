"""``oracle rank --models`` and ``oracle device register --models``: your own networks.

A *models file* is a Python file defining ``MODELS``, a dict ``name -> nn.Module``
(``name -> (module, input shape)`` for networks of their own input shape, or ``name ->
"path/to/net.onnx"``), or a function ``models()`` returning such a dict; it may define
``INPUT_SHAPE`` (batch included), the default of ``--input-shape``. The file is imported and
RUN like any Python config file (``importlib``, its folder first on ``sys.path``): only pass
files you trust. Relative ``.onnx`` paths are relative to the file's folder.

```python
# models.py
from torchvision.models import mobilenet_v3_small, resnet18
INPUT_SHAPE = (1, 3, 224, 224)
MODELS = {"resnet18": resnet18(), "mbv3_small": mobilenet_v3_small()}
```

```console
$ oracle device register my_cpu --models models.py --measure 8 --threads 1
$ oracle device register my_npu --models models.py --csv measured.csv   # name,latency_ms
$ oracle rank --models models.py --devices my_cpu my_npu [--json]
```

The networks are traced into a network space (``client_sdk.measure.networks.network_space``)
registered on the server: idempotent, named ``nets_<content hash>`` unless ``--space-name``
(or ``SPACE/NAME`` as the device name), so the same file finds the same space again.
``--measure N`` times the N networks the server suggests measuring (all of them when N is
at least their number; ``--names a,b`` chooses them) on this machine with the product's
harness (interleaved rounds, drift corrected; ``--threads``, ``--rounds``, ``--repeats``),
then registers the device from them; ONNX files are not timed here (measure them with your
runtime and pass ``--csv``), they are ranked like the modules.
``oracle rank --models`` predicts every network for the devices, fastest first (by the first
device) with the 80 % interval. A bad models file, value or CSV exits with code 2 and one
line naming the problem; server errors (an unknown device: ``NOT_FOUND``) are reported like
every other command's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from client_sdk.cli._common import DEVICE_COLUMNS, _emit, _fail, _progress, _table
from client_sdk.cli._measurements import _contract, _csv_rows, _latency, _report_bad_rows
from client_sdk.cli.device import warn_quality
from client_sdk.client import OracleClient
from client_sdk.errors import OracleClientError


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _input_shape(text: str | None, command: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in re.split(r"[,x\s]+", text.strip()) if v)
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        _fail(
            command,
            f"--input-shape '{text}': expected positive integers, batch included, e.g. 1,3,224,224",
        )
    return shape


def load_models(
    path: str, input_shape: str | None, command: str
) -> tuple[dict[str, Any], tuple[int, ...] | None]:
    """The models file's ``MODELS`` (or ``models()``), each value checked, and the input
    shape (``--input-shape``, else the file's ``INPUT_SHAPE``). Runs the file."""
    from client_sdk._extras import require

    require("measure", f"oracle {command} --models", "torch")
    from torch import nn

    from client_sdk.measure.networks import is_onnx

    file = Path(path)
    if not file.is_file():
        _fail(command, f"models file '{path}' not found")
    spec = importlib.util.spec_from_file_location(f"_oracle_models_{file.stem}", file)
    if spec is None or spec.loader is None:
        _fail(command, f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        with _on_path(file.resolve().parent):
            spec.loader.exec_module(module)
            if callable(getattr(module, "models", None)):
                models = module.models()
            elif hasattr(module, "MODELS"):
                models = module.MODELS
            else:
                _fail(
                    command,
                    f"{path} defines neither MODELS (a dict name -> network) nor "
                    "a function models() returning one",
                )
    except SystemExit:
        raise
    except Exception as exc:  # the user's code: any error is theirs, named in one line
        _fail(command, f"{path}: running it raised {type(exc).__name__}: {exc}")
    if not isinstance(models, Mapping) or not models:
        _fail(
            command,
            f"{path}: MODELS must be a non-empty dict name -> network, got {type(models).__name__}",
        )
    shape = _input_shape(input_shape, command)
    if shape is None and getattr(module, "INPUT_SHAPE", None) is not None:
        shape = _input_shape(",".join(map(str, module.INPUT_SHAPE)), command)
    out: dict[str, Any] = {}
    for name, value in models.items():
        where = f"{path}: MODELS[{name!r}]"
        if not isinstance(name, str) or not name:
            _fail(command, f"{where}: network names must be non-empty strings")
        net, own = (value[0], value[1]) if _is_pair(value) else (value, None)
        if isinstance(net, str | os.PathLike) and is_onnx(net):
            onnx = file.resolve().parent / net
            if not onnx.is_file():
                _fail(command, f"{where}: ONNX file '{net}' not found")
            net = str(onnx)
        elif not (isinstance(net, nn.Module) or is_onnx(net)):
            _fail(
                command,
                f"{where} is a {type(net).__name__}: expected an nn.Module, a "
                "(module, input shape) pair or a path to a .onnx file",
            )
        elif own is None and shape is None:
            _fail(
                command,
                f"{where} has no input shape: pass --input-shape 1,3,224,224 "
                "(batch included), define INPUT_SHAPE in the file, or give "
                "(module, input shape) pairs",
            )
        if own is not None:
            try:
                own = tuple(int(v) for v in own)
            except (TypeError, ValueError):
                _fail(command, f"{where}: the input shape {own!r} is not a tuple of integers")
        out[name] = net if own is None else (net, own)
    return out, shape


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple | list) and len(value) == 2


def build_space(
    c: OracleClient,
    path: str,
    models: dict[str, Any],
    shape: tuple[int, ...] | None,
    name: str | None,
    command: str,
) -> str:
    """Trace ``models`` and register (or find again) their network space; its name. A
    network the tracer refuses is named with the tracer's reason."""
    from client_sdk.measure.networks import network_definition, network_space

    try:
        return network_space(c, models, shape, name=name)
    except OracleClientError:
        raise
    except Exception as exc:  # the user's networks: any error is named in one line
        for label, value in models.items():  # which one (the error path only)
            try:
                network_definition({label: value}, shape)
            except Exception as one:  # same as above, for that network alone
                _fail(
                    command, f"{path}: cannot trace MODELS[{label!r}]: {type(one).__name__}: {one}"
                )
        _fail(command, f"{path}: cannot build the network space: {type(exc).__name__}: {exc}")


def cmd_rank_models(args: argparse.Namespace, c: OracleClient) -> None:
    """``oracle rank --models FILE --devices D [D ...]``."""
    if args.space:
        _fail(
            "rank", "--models builds its own network space: name it with --space-name, not --space"
        )
    if args.file:
        _fail("rank", "--file lists architectures of --space; --models ranks the file's networks")
    models, shape = load_models(args.models, args.input_shape, "rank")
    space = build_space(c, args.models, models, shape, args.space_name, "rank")
    names = list(models)
    res = c.rank(
        space,
        names,
        args.device,
        top_k=args.top_k,
        max_latency_ms=args.max_latency_ms,
        return_uncertainty=True,
    )
    level = f"{res.interval_level:.0%}"
    data: dict[str, Any] = {"space": space, "interval_level": res.interval_level, "ranking": {}}
    for d in res.devices:
        rows = []
        for r, i in enumerate(res.order[d]):
            row = {"rank": r + 1, "name": names[i], "latency_ms": float(res.latency_ms[d][i])}
            if d in res.lower_ms:
                row.update(lower_ms=float(res.lower_ms[d][i]), upper_ms=float(res.upper_ms[d][i]))
            rows.append(row)
        data["ranking"][d] = rows
    first = res.devices[0]
    table, columns = [], ["rank", "name"]
    for d in res.devices:
        columns.append(f"{d} ms")
        if d in res.lower_ms:
            columns.append(f"{d} {level}")
    for r, i in enumerate(res.order[first]):
        row: dict[str, Any] = {"rank": r + 1, "name": names[i]}
        for d in res.devices:
            row[f"{d} ms"] = float(res.latency_ms[d][i])
            if d in res.lower_ms:
                row[f"{d} {level}"] = f"{res.lower_ms[d][i]:.4g}-{res.upper_ms[d][i]:.4g}"
        table.append(row)
    spearman = ", ".join(f"{d} {res.expected_spearman.get(d, math.nan):.3f}" for d in res.devices)
    text = (
        f"{len(table)} of {len(names)} networks of space {space}, fastest first on {first} "
        f"(expected Spearman: {spearman})\n" + _table(table, columns)
    )
    _emit(args, data, text)


def cmd_register_models(args: argparse.Namespace, c: OracleClient) -> None:
    """``oracle device register NAME --models FILE --measure N | --names a,b | --csv F``."""
    cmd = "device register"
    if args.csv and (args.measure is not None or args.names):
        _fail(cmd, "--csv and --measure/--names exclude each other")
    if not args.csv and args.measure is None and not args.names:
        _fail(
            cmd,
            "with --models give --measure N (or --names a,b,...) to measure here, or "
            "--csv FILE (columns name,latency_ms) measured elsewhere",
        )
    if args.measure is not None and args.measure < 1:
        _fail(cmd, f"--measure must be >= 1, got {args.measure}")
    space_name, _, bare = args.name.rpartition("/")
    models, shape = load_models(args.models, args.input_shape, cmd)
    space = build_space(c, args.models, models, shape, args.space_name or space_name or None, cmd)
    contract = _contract(args) or {}
    if args.csv:
        measured = _read_named(args.csv, models, args.skip_bad_rows)
    else:
        measured = _measure(args, c, models, shape, space)
        contract = {**_measured_contract(args, shape), **contract}
    d = c.register_device(bare, space, (list(measured), list(measured.values())), contract)
    rows = [{"name": k, "latency_ms": v} for k, v in measured.items()]
    text = (
        f"registered {d.full_name} from {len(measured)} networks:\n"
        + _table(rows, ("name", "latency_ms"))
        + "\n\n"
        + _table([asdict(d)], DEVICE_COLUMNS)
    )
    _emit(args, {"space": space, "measured": measured, "device": d}, text)
    warn_quality(d)


def _measure(
    args: argparse.Namespace,
    c: OracleClient,
    models: dict[str, Any],
    shape: tuple[int, ...] | None,
    space: str,
) -> dict[str, float]:
    """Time the chosen networks here: ``--names``, else the ``--measure`` N the server
    suggests (all of them when N covers them)."""
    from client_sdk.measure.harness import runs_per_round
    from client_sdk.measure.networks import is_onnx, measure_networks
    from client_sdk.spaces import get_space

    cmd = "device register"
    onnx = {k for k, v in models.items() if is_onnx(v[0] if isinstance(v, tuple) else v)}
    if args.names:
        names = [n.strip() for n in args.names.split(",") if n.strip()]
        unknown = [n for n in names if n not in models]
        if unknown:
            _fail(
                cmd,
                f"--names: {unknown} not in {args.models} (have "
                f"{list(models)[:10]}{' ...' if len(models) > 10 else ''})",
            )
        if onnx.intersection(names):
            _fail(
                cmd,
                f"--names: {sorted(onnx.intersection(names))} are ONNX files, not timed "
                "here: measure them with your runtime and pass --csv FILE",
            )
    elif args.measure >= len(models) - len(onnx):
        names = [k for k in models if k not in onnx]
    else:  # the server's suggestions; ONNX files (not timed here) left out
        suggested = get_space(space).format_many(
            c.suggest_references(space, args.measure + len(onnx), args.seed)
        )
        names = [n for n in suggested if n not in onnx][: args.measure]
    if not names:
        _fail(
            cmd,
            f"{args.models} holds only ONNX files, not timed here: measure them with "
            "your runtime and pass --csv FILE (columns name,latency_ms)",
        )
    print(f"measuring {len(names)} networks on this machine ...", file=sys.stderr)
    return measure_networks(
        models,
        shape,
        names=names,
        threads=args.threads,
        rounds=args.rounds,
        runs=runs_per_round(args.repeats, args.rounds),
        progress=_progress(args),
    )


def _measured_contract(args: argparse.Namespace, shape: tuple[int, ...] | None) -> dict[str, Any]:
    """The contract of ``--measure``: torch on this machine's CPU, fp32 (the fields left
    empty are left out)."""
    import torch

    from client_sdk.measure.contract import contract_fields, hardware_description

    fields = contract_fields(
        batch_size=shape[0] if shape is not None else None,
        threads=args.threads or torch.get_num_threads(),
        runtime="torch",
        runtime_version=torch.__version__,
        hardware=hardware_description("cpu"),
    )
    return {k: v for k, v in fields.items() if v not in (None, "")}


def _read_named(path: str, models: dict[str, Any], skip_bad_rows: bool) -> dict[str, float]:
    """A CSV of networks measured elsewhere: columns ``name`` (or ``arch``) and
    ``latency_ms``, every row checked (a network of the models file, once, a latency in ms)."""

    def fail(message: str) -> NoReturn:
        _fail("device register", message)

    def header_problem(header: list[str]) -> str | None:
        if ("name" in header or "arch" in header) and "latency_ms" in header:
            return None
        return f"expected a CSV with header 'name,latency_ms', got {header}"

    header, rows = _csv_rows(path, header_problem, fail)
    key = "name" if "name" in header else "arch"
    out: dict[str, float] = {}
    bad = []
    for line, row in rows:
        name = (row[key] or "").strip()
        ms, problem = _latency(row["latency_ms"])
        if name not in models:
            problem = f"'{name[:60]}' is not a network of the models file"
        elif name in out:
            problem = f"'{name}' appears twice"
        if problem:
            bad.append(f"line {line}: {problem}")
        else:
            out[name] = ms
    _report_bad_rows(path, bad, len(rows), len(out), skip_bad_rows, fail, one_line=True)
    return out
