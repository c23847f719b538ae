"""The ONNX export cache's size cap (``client_sdk.measure.onnx_cache``), the builder's
eviction and ``oracle device cache``: tiny dummy files stand in for exported networks where
no real export is needed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from client_sdk.cli import main
from client_sdk.measure import onnx_cache as oc

KB = 1024


def put(root: Path, i: int, size: int = 10 * KB, age_s: float = 0.0, space: str = "fbnet"):
    """A cache file ``root/space/<24 hex>.onnx`` of ``size`` bytes last used ``age_s`` ago."""
    path = root / space / f"{i:024x}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


@pytest.fixture(autouse=True)
def _no_env_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv, not delenv: whatever a command sets is undone after the test
    monkeypatch.setenv(oc.ENV_MAX_MB, "")


def test_prune_evicts_least_recently_used_first(tmp_path: Path) -> None:
    files = [put(tmp_path, i, age_s=100 - 10 * i) for i in range(5)]  # files[0] oldest
    oc.touch(files[1])  # used just now: the newest
    res = oc.prune(tmp_path, 25 * KB)
    # oldest first: 0, 2, 3 go (50 -> 20 KB), then the cache is under 25 KB
    assert [p.exists() for p in files] == [False, True, False, False, True]
    assert (res.evicted, res.freed, res.files, res.size) == (3, 30 * KB, 2, 20 * KB)
    assert sum(p.stat().st_size for p in files if p.exists()) == res.size
    assert not res.over_cap


def test_cap_counts_every_space_and_ignores_foreign_files(tmp_path: Path) -> None:
    a = put(tmp_path, 1, age_s=30, space="fbnet")
    b = put(tmp_path, 2, age_s=20, space="nasbench201")
    c = put(tmp_path, 3, age_s=10, space="ofa_mbv3")
    foreign = tmp_path / "fbnet" / "mine.onnx"  # not a cache key: never counted or removed
    foreign.write_bytes(b"\0" * 100 * KB)
    top = tmp_path / f"{4:024x}.onnx"  # outside a space folder
    top.write_bytes(b"\0" * KB)
    assert oc.usage(tmp_path) == (3, 30 * KB)
    res = oc.prune(tmp_path, 20 * KB)
    assert (res.evicted, res.files) == (1, 2)
    assert not a.exists() and b.exists() and c.exists() and foreign.exists() and top.exists()


def test_kept_files_are_never_evicted(tmp_path: Path) -> None:
    old = [put(tmp_path, i, age_s=100 - i) for i in range(3)]
    res = oc.prune(tmp_path, 0, keep=[old[0], str(old[2])])
    assert [p.exists() for p in old] == [True, False, True]
    assert res.evicted == 1 and res.over_cap  # the kept files alone exceed the cap


def test_unlimited_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [put(tmp_path, i, size=100 * KB) for i in range(4)]
    assert oc.max_bytes(0) is None and oc.max_mb_setting(None) == oc.DEFAULT_MAX_MB
    res = oc.prune(tmp_path, oc.max_bytes(0))
    assert res.evicted == 0 and all(p.exists() for p in files)
    monkeypatch.setenv(oc.ENV_MAX_MB, "0.25")
    assert oc.max_bytes() == 256 * KB and oc.max_bytes(1) == oc.MB  # explicit beats the env
    monkeypatch.setenv(oc.ENV_MAX_MB, "0")
    assert oc.max_bytes() is None
    for bad in ("-1", "lots", "inf", "nan"):
        monkeypatch.setenv(oc.ENV_MAX_MB, bad)
        with pytest.raises(ValueError, match=r"\$LATENCY_ORACLE_ONNX_CACHE_MAX_MB must be"):
            oc.max_mb_setting()
    with pytest.raises(ValueError, match="--max-mb must be"):
        oc.max_mb_setting(-3, "--max-mb")


def test_vanishing_files_and_stale_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [put(tmp_path, i, age_s=100 - i) for i in range(3)]
    fresh = files[0].with_name(f".{files[0].name}.123.456.tmp")  # an export in progress
    fresh.write_bytes(b"\0" * KB)
    stale = files[0].with_name(f".{files[1].name}.9.9.tmp")  # a crashed export's leftover
    stale.write_bytes(b"\0" * KB)
    os.utime(stale, (time.time() - 2 * oc.STALE_TMP_S,) * 2)
    real_scan = oc.scan

    def racing_scan(cache_dir):  # another process removes the oldest file meanwhile
        found = real_scan(cache_dir)
        files[0].unlink()
        return found

    monkeypatch.setattr(oc, "scan", racing_scan)
    res = oc.prune(tmp_path, 10 * KB)
    assert res.evicted == 1 and res.files == 1 and res.stale_tmp == 1  # files[0] not ours
    assert fresh.exists() and not stale.exists() and files[2].exists()
    monkeypatch.setattr(oc, "scan", real_scan)
    assert oc.prune(tmp_path / "missing", 0).files == 0  # no cache folder yet


# --- oracle device cache -------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_shows_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        put(tmp_path, i, size=300 * KB)
    # no server: --target points nowhere and the command still answers
    rc, out, _ = run_cli(capsys, "--target", "nohost:1", "device", "cache",
                         "--onnx-cache", str(tmp_path))  # fmt: skip
    assert rc == 0
    assert f"cache   {tmp_path}\n" in out and "files   3\n" in out
    assert "size    0.9 MB (921600 bytes)" in out and "cap     2048 MB" in out
    rc, out, _ = run_cli(capsys, "--json", "device", "cache", "--onnx-cache", str(tmp_path))
    assert json.loads(out) == {
        "cache": str(tmp_path), "max_mb": 2048.0, "files": 3, "bytes": 921600, "exists": True,
    }  # fmt: skip


def test_cli_prunes_and_clears(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [put(tmp_path, i, size=300 * KB, age_s=100 - i) for i in range(4)]
    rc, out, _ = run_cli(capsys, "device", "cache", "--onnx-cache", str(tmp_path),
                         "--prune", "--max-mb", "0.6")  # fmt: skip
    assert rc == 0 and [p.exists() for p in files] == [False, False, True, True]
    assert out.strip() == (
        f"pruned {tmp_path} to 0.6 MB: removed 2 file(s) (0.6 MB); 2 file(s), 0.6 MB left"
    )
    rc, out, _ = run_cli(capsys, "--json", "device", "cache", "--onnx-cache", str(tmp_path),
                         "--clear")  # fmt: skip
    data = json.loads(out)
    assert rc == 0 and data["removed"] == 2 and data["files"] == 0 and data["action"] == "clear"
    assert not any(p.exists() for p in files)


def test_cli_prune_uses_the_environment_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [put(tmp_path, i, size=300 * KB, age_s=100 - i) for i in range(4)]
    monkeypatch.setenv(oc.ENV_MAX_MB, "0.3")
    rc, out, _ = run_cli(capsys, "device", "cache", "--onnx-cache", str(tmp_path), "--prune")
    assert rc == 0 and [p.exists() for p in files] == [False, False, False, True]
    monkeypatch.setenv(oc.ENV_MAX_MB, "0")  # unlimited: nothing to remove
    put(tmp_path, 9, size=300 * KB)
    rc, out, _ = run_cli(capsys, "device", "cache", "--onnx-cache", str(tmp_path), "--prune")
    assert rc == 0 and "to unlimited: removed 0 file(s)" in out and oc.usage(tmp_path)[0] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prune", "--max-mb", "-1"], "--max-mb must be a number of MB >= 0"),
        (["--prune", "--max-mb", "nan"], "--max-mb must be a number of MB >= 0"),
        (["--max-mb", "5"], "--max-mb is the size --prune prunes to: add --prune"),
        (["--prune", "--clear"], "choose one of --prune and --clear"),
        (["--onnx-cache-max-mb", "5"], "--onnx-cache-max-mb is for onboard/export"),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    put(tmp_path, 1)
    rc, out, err = run_cli(capsys, "device", "cache", "--onnx-cache", str(tmp_path), *argv)
    assert rc == 2 and out == "" and err.startswith("oracle device cache: ") and message in err
    assert oc.usage(tmp_path)[0] == 1  # nothing removed


def test_cli_errors_on_bad_environment_and_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(oc.ENV_MAX_MB, "lots")
    rc, _, err = run_cli(capsys, "device", "cache", "--onnx-cache", str(tmp_path))
    assert rc == 2 and "$LATENCY_ORACLE_ONNX_CACHE_MAX_MB must be a number" in err
    assert "'lots'" in err
    put(tmp_path, 1)
    rc, out, _ = run_cli(capsys, "device", "cache", "--onnx-cache", str(tmp_path), "--clear")
    assert rc == 0 and "removed 1 file(s)" in out  # --clear needs no cap
    monkeypatch.setenv(oc.ENV_MAX_MB, "")
    (tmp_path / "file").write_text("x")
    rc, _, err = run_cli(capsys, "device", "cache", "--onnx-cache", str(tmp_path / "file"))
    assert rc == 2 and "is not a directory" in err
    rc, _, err = run_cli(capsys, "device", "cache", "--max-mb", "abc")
    assert rc == 2 and "invalid float value: 'abc'" in err


def test_cache_options_belong_to_cache(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(capsys, "--target", "nohost:1", "device", "show", "x", "--prune")
    assert rc == 2 and "oracle device show: --prune: only for device cache" in err
    rc, _, err = run_cli(capsys, "--target", "nohost:1", "device", "onboard", "x",
                         "--runtime", "onnxruntime", "--onnx-cache-max-mb", "-2")  # fmt: skip
    assert rc == 2 and "oracle device onboard: --onnx-cache-max-mb must be a number" in err


def test_parser_takes_the_onboard_flag() -> None:
    from client_sdk.cli._parser import _parser

    args = _parser().parse_args(["device", "export", "--onnx-cache-max-mb", "512"])
    assert args.onnx_cache_max_mb == 512.0 and args.action == "export"


def test_onboard_flag_reaches_the_harness_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    """``onboard()`` has no cap setting: the flag sets ``$LATENCY_ORACLE_ONNX_CACHE_MAX_MB``, which
    the harness's ``OrtBuilder`` reads (``max_mb_setting()``)."""
    import client_sdk.measure.onboard as onboard_module

    class Stop(Exception):
        pass

    seen: dict[str, float] = {}

    def fake_onboard(*_a, **_k):
        seen["cap"] = oc.max_mb_setting()
        raise Stop

    monkeypatch.setattr(onboard_module, "onboard", fake_onboard)
    with pytest.raises(Stop):
        main(["--target", "nohost:1", "device", "onboard", "x", "--runtime", "onnxruntime",
              "--onnx-cache-max-mb", "300"])  # fmt: skip
    assert seen["cap"] == 300.0
