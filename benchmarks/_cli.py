"""The command line and output every benchmark shares.

* :func:`parser`: an ``ArgumentParser`` with ``--json PATH`` (where the results go; default
  per benchmark) and ``--max-load L`` (refuse to start on a busy machine: timings on a shared
  2-core machine move with other jobs); :func:`add_options` adds options declared by their
  default (its type and value) and help;
* :func:`environment`: what produced a figure (python / torch / grpcio / numpy versions, CPU
  count, git commit, load average), recorded under ``"environment"`` by :func:`write_json`;
* :func:`write_json`, :func:`finish` (the end of a ``main``) and :func:`print_table`.

Benchmarks run from the checkout root as ``.venv/bin/python -m benchmarks.<name> ...``
(``benchmarks.studies.<name>`` for the finished studies).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: One current JSON per benchmark (and per documented configuration); history is git's.
RESULTS = ROOT / "benchmarks" / "results"
#: The versions recorded with every result (distribution names).
VERSIONS = ("torch", "grpcio", "numpy")


class BenchParser(argparse.ArgumentParser):
    """``ArgumentParser`` that applies ``--max-load`` once the arguments are parsed."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        ns = super().parse_args(args, namespace)
        check_quiet(getattr(ns, "max_load", None))
        return ns


def parser(
    description: str | None,
    *,
    json_default: Path | None = None,
    json_aliases: Sequence[str] = (),
    json_required: bool = False,
    **kwargs: Any,
) -> BenchParser:
    """A parser described by ``description`` with ``--json PATH`` (``json_default``: None =
    print only; ``json_aliases``: former spellings such as ``--out``) and ``--max-load L``.
    ``kwargs`` go to ``ArgumentParser``."""
    p = BenchParser(description=description, **kwargs)
    p.add_argument(
        "--json",
        *json_aliases,
        dest="json",
        type=Path,
        default=json_default,
        required=json_required,
        metavar="PATH",
        help="write the results here"
        + (f" (default: {_rel(json_default)})" if json_default else ""),
    )
    p.add_argument(
        "--max-load",
        type=float,
        default=None,
        metavar="L",
        help="exit at once if the 1-minute load average is above L",
    )
    return p


def add_options(p: argparse.ArgumentParser, **options: Any) -> None:
    """Options declared by their default, in order: ``name=default`` or ``name=(default,
    help)`` adds ``--name`` (``_`` read as ``-``) of the default's type (int, float, str,
    Path): ``add_options(p, duration=60.0, clients=(8, "concurrent clients"))``."""
    for name, spec in options.items():
        default, help_text = spec if isinstance(spec, tuple) else (spec, None)
        p.add_argument(
            f"--{name.replace('_', '-')}", type=type(default), default=default, help=help_text
        )


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def check_quiet(max_load: float | None) -> None:
    """Exit with a message when the 1-minute load average is above ``max_load`` (None: none)."""
    load = load_average()
    if max_load is not None and load is not None and load[0] > max_load:
        sys.exit(f"load average {load[0]} > --max-load {max_load}: not a quiet machine")


def git_commit(root: Path = ROOT) -> str:
    """``git rev-parse --short HEAD`` of ``root`` ("" outside a git checkout)."""
    try:
        run = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return run.stdout.strip()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(root: Path = ROOT) -> dict[str, Any]:
    """The environment header of a result: versions, machine, CPU count, git commit of
    ``root`` and the load average now."""
    return {
        "python": platform.python_version(),
        **{name: _version(name) for name in VERSIONS},
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "git": git_commit(root),
        "loadavg": load_average(),
    }


def write_json(
    path: Path | str, payload: Any, *, indent: int = 2, env: bool = True, **dumps: Any
) -> None:
    """Write ``payload`` to ``path`` (parents created), with :func:`environment` under
    ``"environment"`` when it is a dict that has none (``env=False``: as it is)."""
    if env and isinstance(payload, dict) and "environment" not in payload:
        payload = {**payload, "environment": environment()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=indent, **dumps) + "\n")


def finish(
    path: Path | None, result: Any, *, ok: bool = True, announce: bool = False, **write: Any
) -> int:
    """The end of a benchmark's ``main``: ``result`` written to ``path`` by :func:`write_json`
    (``write``: its keywords) when a path is given, ``wrote PATH`` printed when ``announce``;
    the exit status, 0 when ``ok`` else 1."""
    if path:
        write_json(path, result, **write)
        if announce:
            print(f"wrote {path}")
    return 0 if ok else 1


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, floatfmt: str = ".3f"
) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned; floats
    formatted with ``floatfmt``."""
    cells = [[format(c, floatfmt) if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
        for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return " ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    print(line([str(h) for h in headers]))
    for r in cells:
        print(line(r))
