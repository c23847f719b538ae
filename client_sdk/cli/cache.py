"""``oracle device cache [--prune [--max-mb N] | --clear] [--onnx-cache DIR]``: the ONNX export
cache of ``--runtime onnxruntime`` and ``device export`` (``client_sdk.measure.onnx_cache``).
Local only: no server is contacted."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import TYPE_CHECKING, Any

from client_sdk.cli._common import _emit, _fail

if TYPE_CHECKING:
    from client_sdk.measure import onnx_cache as oc


def _oc() -> ModuleType:
    """``client_sdk.measure.onnx_cache``, imported when used: ``client_sdk.measure`` needs
    the [measure] extra, which the rest of the CLI does not (a light install)."""
    from client_sdk.measure import onnx_cache

    return onnx_cache

COMMAND = "device cache"


def check_cache_options(args: argparse.Namespace) -> None:
    """``--prune``/``--clear``/``--max-mb`` belong to ``device cache``; ``--onnx-cache-max-mb``
    to ``onboard``/``export``."""
    given = [o for o, v in (("--prune", args.prune), ("--clear", args.clear)) if v]
    if args.max_mb is not None:
        given.append("--max-mb")
    if args.action != "cache" and given:
        _fail(f"device {args.action}", f"{'/'.join(given)}: only for device cache")
    if args.action == "cache" and args.onnx_cache_max_mb is not None:
        _fail(COMMAND, "--onnx-cache-max-mb is for onboard/export; use --prune --max-mb N")


def cap_mb(value: float | None, option: str, command: str) -> float:
    """The cache cap (``value``, else ``$LATENCY_ORACLE_ONNX_CACHE_MAX_MB``, else the
    default); a bad one is a usage error naming the option or the variable."""
    try:
        return _oc().max_mb_setting(value, option)
    except ValueError as exc:
        _fail(command, str(exc))


def _describe_cap(mb: float) -> str:
    return "unlimited" if mb == 0 else f"{mb:g} MB"


def _result(res: oc.PruneResult) -> dict[str, Any]:
    return {
        "removed": res.evicted,
        "freed_bytes": res.freed,
        "stale_tmp_removed": res.stale_tmp,
        "files": res.files,
        "bytes": res.size,
    }


def _removed(res: oc.PruneResult) -> str:
    return (
        f"removed {res.evicted} file(s) ({_oc().format_mb(res.freed)})"
        + (f" and {res.stale_tmp} stale temporary file(s)" if res.stale_tmp else "")
        + f"; {res.files} file(s), {_oc().format_mb(res.size)} left"
    )


def cmd_cache(args: argparse.Namespace) -> int:
    check_cache_options(args)
    if args.prune and args.clear:
        _fail(COMMAND, "choose one of --prune and --clear")
    if args.max_mb is not None and not args.prune:
        _fail(COMMAND, "--max-mb is the size --prune prunes to: add --prune")
    root = _oc().cache_root(args.onnx_cache)
    if root.exists() and not root.is_dir():
        _fail(COMMAND, f"{root} is not a directory (--onnx-cache / ${_oc().ENV_DIR})")
    if args.clear:  # needs no cap (a bad $LATENCY_ORACLE_ONNX_CACHE_MAX_MB does not stop it)
        res = _oc().clear(root)
        _emit(args, {"cache": str(root), "action": "clear", **_result(res)},
              f"cleared {root}: {_removed(res)}")  # fmt: skip
        return 0
    mb = cap_mb(args.max_mb, "--max-mb", COMMAND)
    data: dict[str, Any] = {"cache": str(root), "max_mb": mb}
    if args.prune:
        res = _oc().prune(root, _oc().max_bytes(mb))
        data.update(action="prune", **_result(res))
        text = f"pruned {root} to {_describe_cap(mb)}: {_removed(res)}"
    else:
        files, size = _oc().usage(root)
        data.update(files=files, bytes=size, exists=root.is_dir())
        lines = [
            f"cache   {root}" + ("" if root.is_dir() else " (does not exist yet)"),
            f"files   {files}",
            f"size    {_oc().format_mb(size)} ({size} bytes)",
            f"cap     {_describe_cap(mb)} (--onnx-cache-max-mb / ${_oc().ENV_MAX_MB}; "
            "oracle device cache --prune applies it now)",
        ]
        text = "\n".join(lines)
    _emit(args, data, text)
    return 0
