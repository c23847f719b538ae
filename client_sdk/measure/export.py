"""``oracle device export``: the measuring kit for a device the SDK cannot run on.

The oracle's suggested references (``SuggestReferences``) and ``retest`` random
architectures of the space are exported to ONNX (``onnx_runtime.export_arch``: torch's
exporter at a fixed opset, every file checked by ``onnx.checker`` and run once by ONNX
Runtime) into ``OUT/models/``, with:

* ``measurements.csv``: ``arch,file,latency_ms``, one row per file, latency blank: the user
  times each file with the toolchain they deploy and fills the column in milliseconds;
* ``contract.json``: the device contract to complete (threads, runtime, version, precision,
  hardware); ``oracle device register`` reads it from beside the CSV;
* ``manifest.json``: space, files, architectures, input shapes (the register step checks
  the CSV against it: wrong space, a file holding another architecture);
* ``README.md``: what to report, and recipes for ``onnxruntime_perf_test``, TensorRT's
  ``trtexec`` and TFLite's ``benchmark_model`` (after an ONNX -> TFLite converter).

The product runs none of those toolchains: it writes what they need and reads what they
report (``oracle device register --csv OUT/measurements.csv``).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from client_sdk.measure import onnx_runtime as ox
from client_sdk.measure.builders import input_resolution
from client_sdk.measure.contract import contract_fields
from client_sdk.measure.onboard_pipeline import random_archs as _random_archs
from client_sdk.measure.onnx_cache import max_mb_setting
from client_sdk.spaces import get_space

MANIFEST_KIND = "latency-oracle device export"
FORMATS = ("onnx",)


def export_kit(
    client: Any,
    space: str,
    out: str | Path,
    *,
    samples: int = 10,
    retest: int = 20,
    seed: int = 0,
    batch_size: int = 1,
    fmt: str = "onnx",
    onnx_cache: str | Path | None = None,
    onnx_cache_max_mb: float | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Write the kit for ``samples`` suggested references + ``retest`` random architectures
    of ``space`` into ``out`` (which must not hold a ``measurements.csv`` yet); returns the
    manifest. The files come from the ONNX cache ``onnx_cache``, kept under
    ``onnx_cache_max_mb`` MB (``onnx_runtime.OrtBuilder``'s ``max_mb``: None =
    ``$LATENCY_ORACLE_ONNX_CACHE_MAX_MB`` or 2048, 0 = unlimited)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (have {FORMATS})")
    if samples < 1 or retest < 0:
        raise ValueError("need samples >= 1 and retest >= 0")
    max_mb_setting(onnx_cache_max_mb)  # a bad cache cap fails before any work
    say = log or (lambda _msg: None)
    out = Path(out)
    csv_path = out / "measurements.csv"
    if csv_path.exists():
        raise FileExistsError(
            f"{csv_path} exists (measurements of an earlier export?): "
            "choose another --out or remove it"
        )
    sp = get_space(space)
    refs = sp.validate(client.suggest_references(space, samples, seed=seed))
    extra = _random_archs(sp, retest, seed + 2, exclude=refs)
    (out / "models").mkdir(parents=True, exist_ok=True)
    entries = []
    builder = ox.OrtBuilder(onnx_cache, threads=1, max_mb=onnx_cache_max_mb)
    for kind, genes in (("ref", refs), ("retest", extra)):
        for i, g in enumerate(genes):
            model, x = builder(sp, g, batch_size, "cpu")
            y = model(x)  # it loads and runs
            rel = f"models/{kind}_{i:03d}.onnx"
            shutil.copyfile(model.path, out / rel)
            entries.append(
                {
                    "file": rel,
                    "arch": sp.format(g),
                    "kind": kind,
                    "input_shape": list(x.shape),
                    "output_shape": list(y.shape),
                }
            )
        say(f"exported {len(genes)} {'references' if kind == 'ref' else 'retest archs'}")
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "file", "latency_ms"])
        w.writerows([e["arch"], e["file"], ""] for e in entries)
    res = input_resolution(sp)
    manifest = {
        "kind": MANIFEST_KIND,
        "space": sp.name,
        "format": fmt,
        "opset": ox.OPSET,
        "exporter": f"torch {torch.__version__} (TorchScript exporter)",
        "batch_size": batch_size,
        "input_name": ox.INPUT_NAME,
        "output_name": ox.OUTPUT_NAME,
        "precision": "fp32",
        "samples": len(refs),
        "retest": len(extra),
        "seed": seed,
        "files": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    contract = contract_fields(
        batch_size=batch_size,
        threads=None,
        input_resolution=res or 0,
        notes=f"exported by oracle device export: ONNX opset {ox.OPSET}, random weights",
    )
    (out / "contract.json").write_text(json.dumps(contract, indent=2) + "\n")
    (out / "README.md").write_text(readme(manifest))
    say(
        f"wrote {len(entries)} ONNX files ({builder.cached} from the cache), measurements.csv, "
        f"contract.json, manifest.json and README.md to {out}"
    )
    return manifest


def readme(manifest: dict[str, Any]) -> str:
    """The kit's README: what to measure, what to report, three toolchains' recipes."""
    files = manifest["files"]
    shapes = sorted({"x".join(map(str, e["input_shape"])) for e in files})
    first = files[0]["file"] if files else "models/ref_000.onnx"
    space, batch = manifest["space"], manifest["batch_size"]
    return f"""# Measure these networks on your device

{len(files)} networks of the search space `{space}` ({manifest["samples"]} references the
oracle suggested + {manifest["retest"]} random architectures for the retest), exported to
ONNX (opset {manifest["opset"]}, {manifest["exporter"]}), fp32, random weights, static shapes:
input `{manifest["input_name"]}` of shape {", ".join(shapes)} (N, C, H, W; batch {batch}),
output `{manifest["output_name"]}`. Every file passed `onnx.checker` and ran in ONNX Runtime.

## What to do

1. Time every file of `models/` on the device, with the runtime you deploy, **one
   setting for all files** (same threads, precision, clocks), after a warm-up, and take the
   median of at least 30 runs. Measure the files in a shuffled order, twice if you can
   (two passes a few minutes apart; report the median of both): a device whose speed drifts
   while you measure ranks badly.
2. Fill the `latency_ms` column of `measurements.csv`: **milliseconds per inference**, a
   positive number, one row per file (keep the `arch` column as it is; the `file` column
   may stay). A row you could not measure: leave it blank and register with
   `--skip-bad-rows` (blank, negative, zero, NaN or text latencies are refused, naming the
   line; so are duplicated rows and architectures of another space).
3. Complete `contract.json` (the device contract stored with the device):
   - `unit`: `ms/inference` (the only unit; convert us or s before filling the CSV)
   - `batch_size`: {batch} (as exported)
   - `threads`: CPU threads of the runtime (0 for a GPU/NPU)
   - `runtime`, `runtime_version`: e.g. `onnxruntime` `1.22.0`, `tensorrt` `10.9`,
     `tflite` `2.19`
   - `precision`: `fp32`, `fp16`, `int8`, ... as run (not as exported)
   - `hardware`: the device (SoC, CPU model, GPU, board)
   - `notes`: anything else (clocks, power mode, delegate, statistic)
4. Register: `oracle device register NAME --csv measurements.csv` (reads `contract.json`
   and `manifest.json` beside the CSV; `--contract FILE` for another contract).

## Recipes

The oracle runs none of these; they are what you would run on the device.

**ONNX Runtime** (`onnxruntime_perf_test`, built with ONNX Runtime):

    for f in models/*.onnx; do
      onnxruntime_perf_test -e cpu -m times -r 200 -x 1 -y 1 -o 99 -I "$f"
    done

`-x` intra-op threads, `-y` inter-op threads, `-o 99` all graph optimisations, `-I` random
inputs. Report "Average inference time cost" (ms); a P50 printed in seconds is x 1000.

**TensorRT** (`trtexec`, on the GPU you deploy; add `--fp16` or `--int8` as you run it):

    trtexec --onnx={first} --noTF32 --warmUp=500 --iterations=200 \\
            --useCudaGraph --noDataTransfers --useSpinWait

Report the median of "GPU Compute Time" (ms) per file, precision `fp32` (`--noTF32`) or
what you passed.

**TFLite** (`benchmark_model`, after converting ONNX to TFLite, e.g. with `onnx2tf`, which
also turns NCHW into NHWC):

    onnx2tf -i {first} -o tflite/ref_000
    benchmark_model --graph=tflite/ref_000/ref_000_float32.tflite --num_threads=1 \\
            --warmup_runs=20 --num_runs=200 --use_xnnpack=true

`benchmark_model` prints "Inference timings in us: ... Inference (avg): X": microseconds,
so `latency_ms` = X / 1000.
"""
