"""The docs cite only what exists (issue 29): README.md, CHANGELOG.md and every docs/*.md.

* every relative markdown link and image resolves to a file or directory of the checkout,
  and a ``#fragment`` names a heading of its target (GitHub's heading slugs);
* every cited ``benchmarks/results/*.json`` exists and is valid JSON (bare result names such
  as ``serving.json`` too; braces and ``*`` expand to at least one file);
* every ``python -m benchmarks.X`` / ``benchmarks.X`` module exists, and every repository
  path a doc names (``benchmarks/X.py``, ``oracle_server/...``, ``tests/...::test``) exists;
  no command runs a benchmark as a script (``python benchmarks/X.py`` fails: they are
  modules);
* every ``make <target>`` in code is a target of the Makefile.

``problems(path, text)`` does the checking; the last tests feed it a broken document to show
that each kind of break is reported.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
#: top-level folders whose paths, when a doc names them, must exist
REPO_DIRS = (
    "benchmarks",
    "client_sdk",
    "oracle_server",
    "tests",
    "docs",
    "deploy",
    "examples",
    "protos",
)
#: bare ``*.json`` names the docs use for files that are not benchmark results
NOT_RESULTS = frozenset({"contract.json", "manifest.json"})

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
RESULT_PATH = re.compile(r"benchmarks/results/([\w.{},*/-]+?\.json)\b")
BARE_JSON = re.compile(r"^([\w{},*-]+\.json)$")
MODULE = re.compile(r"(?<![\w./-])benchmarks((?:\.[A-Za-z_]\w*)+)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(REPO_DIRS) + r")/[\w./{},*:-]*[\w*}/])")
MAKE = re.compile(r"(?<![\w./-])make\s+([a-z][\w-]*)")
#: a benchmark run as a script: they are modules (``python -m benchmarks.X``) and fail so
SCRIPT_RUN = re.compile(r"\bpython3?\s+(benchmarks/[\w/]+\.py)")


def lines(text: str) -> list[tuple[str, bool]]:
    """Each line with whether it is inside a fenced code block (fence lines count as in)."""
    out = []
    fence: str | None = None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append((line, True))
        elif fence is not None:
            closing = (
                m is not None
                and m.group(1)[0] == fence[0]
                and len(m.group(1)) >= len(fence)
                and not line.strip().strip(fence[0])
            )
            out.append((line, True))
            if closing:
                fence = None
        else:
            out.append((line, False))
    return out


def split(text: str) -> tuple[str, list[str]]:
    """(prose with fenced blocks and code spans blanked, code: the fenced blocks' lines and
    every inline code span)."""
    prose, code = [], []
    for line, fenced in lines(text):
        if fenced:
            code.append(line)
            prose.append("")
        else:
            code.extend(s for _, s in CODE_SPAN.findall(line))
            prose.append(CODE_SPAN.sub(lambda c: " " * len(c.group(0)), line))
    return "\n".join(prose), code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text as rendered, lower case, punctuation other
    than ``-`` and ``_`` removed, spaces as ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a document's headings (a repeated heading gets ``-1``, ``-2``, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line, fenced in lines(text):
        m = None if fenced else HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def expand(pattern: str) -> list[str]:
    """Shell-style ``{a,b}`` alternatives (nested braces not needed by the docs)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [
        p
        for alt in m.group(1).split(",")
        for p in expand(pattern[: m.start()] + alt + pattern[m.end() :])
    ]


def matches(path: str) -> list[Path]:
    """The files a cited path (braces, ``*`` globs) names; [] when none exists."""
    found: list[Path] = []
    for p in expand(path):
        if "*" in p:
            found += [Path(f) for f in sorted(glob.glob(str(REPO / p)))]
        elif (REPO / p).exists():
            found.append(REPO / p)
        else:
            return []
    return found


def makefile_targets() -> set[str]:
    targets = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.%-]+(?:\s+[A-Za-z0-9_.%-]+)*)\s*:(?![:=])", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets


def _check_result(cited: str, where: str, out: list[str], bare: bool = False) -> None:
    """A cited result; a bare name may be a study's (``benchmarks/results/studies/``)."""
    files = matches(f"benchmarks/results/{cited}")
    if not files and bare:
        files = matches(f"benchmarks/results/studies/{cited}")
    if not files:
        out.append(f"{where}: cites benchmarks/results/{cited}, which does not exist")
    for f in files:
        try:
            json.loads(f.read_text())
        except ValueError as exc:
            out.append(f"{where}: {f.relative_to(REPO)} is not valid JSON ({exc})")


def problems(path: Path, text: str) -> list[str]:
    """Everything ``text`` (the document at ``path``) cites that does not exist."""
    name = path.name if path.parent == REPO else f"{path.parent.name}/{path.name}"
    prose, code = split(text)
    out: list[str] = []
    for target in LINK.findall(prose) + REF_DEF.findall(prose):
        if SCHEME.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            out.append(f"{name}: link to {target}: {file_part} does not exist")
            continue
        if fragment and dest.suffix == ".md":
            heads = anchors(text if dest == path else dest.read_text())
            if fragment not in heads:
                out.append(f"{name}: link to {target}: no heading #{fragment} in {dest.name}")
    for cited in sorted(set(RESULT_PATH.findall(text))):
        _check_result(cited, name, out)
    for span in code:
        m = BARE_JSON.match(span.strip())
        if m and m.group(1) not in NOT_RESULTS:
            _check_result(m.group(1), name, out, bare=True)
    for dotted in sorted(set(MODULE.findall(text))):
        parts = dotted.strip(".").split(".")
        base = REPO / "benchmarks" / Path(*parts)
        if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
            out.append(f"{name}: names module benchmarks{dotted}, which does not exist")
    for cited in sorted(set(REPO_PATH.findall(text))):
        cited = cited.split("::")[0].rstrip("/")
        if cited and not matches(cited):
            out.append(f"{name}: names {cited}, which does not exist")
    for script in sorted(set(SCRIPT_RUN.findall(text))):
        module = script[: -len(".py")].replace("/", ".")
        out.append(f"{name}: runs {script} as a script; benchmarks run as `python -m {module}`")
    targets = makefile_targets()
    for line in code:
        for target in MAKE.findall(line):
            if target not in targets:
                out.append(f"{name}: `make {target}` is not a Makefile target")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_doc_cites_only_what_exists(doc: Path) -> None:
    assert doc.is_file(), f"{doc.relative_to(REPO)} is missing"
    found = problems(doc, doc.read_text())
    assert not found, "\n".join(found)


def test_every_doc_is_checked() -> None:
    assert {p.name for p in DOCS} >= {"README.md", "CHANGELOG.md", "performance.md"}
    assert len(DOCS) >= 10


BROKEN = """# Title

## A section

See [the missing page](docs/no_such_page.md), [a bad anchor](#no-such-section),
[a good anchor](#a-section), [another doc's bad anchor](docs/transfer.md#nowhere) and
![a missing picture](docs/missing.png).

```bash
.venv/bin/python -m benchmarks.no_such_benchmark --json benchmarks/results/no_such.json
make no-such-target
python benchmarks/serving.py --quick
```

Written to `not_a_result.json`; see `oracle_server/no_such_module.py` and
`tests/unit/no_such_test.py::test_x`.
"""


def test_a_broken_document_is_reported() -> None:
    found = "\n".join(problems(REPO / "README.md", BROKEN))
    for expected in (
        "docs/no_such_page.md does not exist",
        "no heading #no-such-section",
        "no heading #nowhere in transfer.md",
        "docs/missing.png does not exist",
        "benchmarks/results/no_such.json, which does not exist",
        "benchmarks/results/not_a_result.json, which does not exist",
        "module benchmarks.no_such_benchmark",
        "`make no-such-target` is not a Makefile target",
        "oracle_server/no_such_module.py, which does not exist",
        "tests/unit/no_such_test.py, which does not exist",
        "runs benchmarks/serving.py as a script",
    ):
        assert expected in found, f"not reported: {expected}\n{found}"
    assert "#a-section" not in found


def test_links_and_anchors_that_exist_pass() -> None:
    ok = (
        "# Title\n\n## Fair share (`--x`)\n\n[here](#fair-share---x), "
        "[security](docs/security.md#fair-share), [data](client_sdk/data/), "
        "`benchmarks/results/serving.json`, `make test`, "
        "`python -m benchmarks.serving`, `benchmarks/results/{help,lfo}_fbnet_10.json`\n"
    )
    assert problems(REPO / "README.md", ok) == []


def test_slugs_follow_github() -> None:
    assert (
        slug("3. Selection (`oracle_server/predictor/selection.py`)")
        == "3-selection-oracle_serverpredictorselectionpy"
    )
    assert slug("`make bench-onboarding`: this CPU") == "make-bench-onboarding-this-cpu"
    assert slug("Tenants") == "tenants"
