"""The ONNX export cache: where ``onnx_runtime`` keeps its exported files, and its size cap.

Layout: ``DIR/<space>/<key>.onnx`` (``onnx_runtime.onnx_path``; ``key`` is 24 hex digits).
Only files of exactly that form count as the cache's: pointing ``--onnx-cache`` at a folder
holding other ``.onnx`` files never deletes them.

Size cap (least recently used): a cache hit touches the file's mtime (``touch``), and after
each export the builder prunes the cache to ``max_bytes`` (``prune``: one ``scandir`` of the
cache folder and of each space folder), removing the files with the oldest mtime first and
never a file in ``keep`` (the files this process's builders opened or wrote). The cap is
``LATENCY_ORACLE_ONNX_CACHE_MAX_MB`` (MB = 2**20 bytes, ``DEFAULT_MAX_MB`` if unset; 0 =
unlimited) or an explicit ``max_mb``. Several processes may share a cache: a file that
vanishes while it is pruned is skipped, and exports are written to a temporary name and
renamed into place (``onnx_runtime.export_onnx``); temporaries left by a crashed export are
removed once they are ``STALE_TMP_S`` old.

This module needs neither torch nor onnx (``oracle device cache`` uses it alone).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ENV_DIR = "LATENCY_ORACLE_ONNX_CACHE"
ENV_MAX_MB = "LATENCY_ORACLE_ONNX_CACHE_MAX_MB"
#: default cap: 2 GiB (~100 ImageNet-size FBNet/OFA files)
DEFAULT_MAX_MB = 2048.0
MB = 1 << 20
#: a temporary export file older than this is a crashed export's leftover
STALE_TMP_S = 3600.0
_FILE = re.compile(r"[0-9a-f]{24}\.onnx")
_TMP = re.compile(r"\.[0-9a-f]{24}\.onnx\.\d+\.\d+\.tmp")


def default_cache_dir() -> Path:
    """``$LATENCY_ORACLE_ONNX_CACHE``, else ``$XDG_CACHE_HOME/latency-oracle/onnx`` (default
    ``~/.cache/latency-oracle/onnx``)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "latency-oracle" / "onnx"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` (``~`` expanded), else ``default_cache_dir()``."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def max_mb_setting(max_mb: float | str | None = None, name: str = "max_mb") -> float:
    """The cap in MB: ``max_mb`` if given, else ``$LATENCY_ORACLE_ONNX_CACHE_MAX_MB``, else
    ``DEFAULT_MAX_MB``; 0 = unlimited. A negative, infinite or non-numeric value is a
    ``ValueError`` naming where it came from (``name``, or the variable)."""
    source = name
    if max_mb is None:
        env = os.environ.get(ENV_MAX_MB, "").strip()
        if not env:
            return DEFAULT_MAX_MB
        max_mb, source = env, f"${ENV_MAX_MB}"
    try:
        value = float(max_mb)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{source} must be a number of MB >= 0 (0 = unlimited), got {max_mb!r}")
    return value


def max_bytes(max_mb: float | str | None = None) -> int | None:
    """The cap in bytes (``max_mb_setting``), None when unlimited."""
    mb = max_mb_setting(max_mb)
    return None if mb == 0 else int(mb * MB)


@dataclass(frozen=True)
class CacheFile:
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class PruneResult:
    """What ``prune``/``clear`` did: files removed (``evicted``, ``freed`` bytes), what is
    left (``files``, ``size`` in bytes), stale temporaries removed (``stale_tmp``), and
    ``over_cap`` when the kept files alone exceed the cap."""

    evicted: int = 0
    freed: int = 0
    files: int = 0
    size: int = 0
    stale_tmp: int = 0
    over_cap: bool = False


def _key(path: str | Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _subdirs(root: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(root) as it:
            return [e for e in it if not e.name.startswith(".") and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def scan(cache_dir: str | Path | None = None) -> tuple[list[CacheFile], list[Path]]:
    """The cache's files (``DIR/<space>/<key>.onnx``) and the stale temporaries of crashed
    exports; a file vanishing meanwhile is left out."""
    root = cache_root(cache_dir)
    files: list[CacheFile] = []
    stale: list[Path] = []
    cutoff = time.time() - STALE_TMP_S
    for sub in _subdirs(root):
        try:
            with os.scandir(sub.path) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            is_file, is_tmp = bool(_FILE.fullmatch(e.name)), bool(_TMP.fullmatch(e.name))
            if not (is_file or is_tmp):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if is_file:
                files.append(CacheFile(Path(e.path), st.st_size, st.st_mtime_ns))
            elif st.st_mtime < cutoff:
                stale.append(Path(e.path))
    return files, stale


def usage(cache_dir: str | Path | None = None) -> tuple[int, int]:
    """``(files, bytes)`` of the cache."""
    files, _ = scan(cache_dir)
    return len(files), sum(f.size for f in files)


def _unlink(path: Path) -> bool:
    """Remove ``path``; False if another process removed it first."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def prune(
    cache_dir: str | Path | None, limit: int | None, keep: Iterable[str | Path] = ()
) -> PruneResult:
    """Remove the least recently used files (oldest mtime first) until the cache holds at
    most ``limit`` bytes (None: no limit, only stale temporaries go), never a file of
    ``keep``."""
    files, stale = scan(cache_dir)
    n_stale = sum(_unlink(p) for p in stale)
    total = sum(f.size for f in files)
    left = len(files)
    evicted = freed = 0
    if limit is not None and total > limit:
        kept = {_key(p) for p in keep}
        for f in sorted(files, key=lambda f: (f.mtime_ns, str(f.path))):
            if total <= limit:
                break
            if _key(f.path) in kept:
                continue
            if _unlink(f.path):
                evicted += 1
                freed += f.size
            total -= f.size
            left -= 1
    over = limit is not None and total > limit
    return PruneResult(evicted, freed, left, total, n_stale, over)


def clear(cache_dir: str | Path | None = None, keep: Iterable[str | Path] = ()) -> PruneResult:
    """Remove every cache file (but those of ``keep``) and the stale temporaries."""
    return prune(cache_dir, 0, keep)


def touch(path: str | Path) -> None:
    """Mark a cache file used now (its mtime); a read-only or vanished file is left as is."""
    with contextlib.suppress(OSError):
        os.utime(path)


def format_mb(n_bytes: int) -> str:
    return f"{n_bytes / MB:.1f} MB"
