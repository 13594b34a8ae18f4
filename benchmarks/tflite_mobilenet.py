"""MobileNetV2 latency of edgec's tflite-arm artifacts (LiteRT + XNNPACK) on this machine's CPU.

In one run: tflite-arm fp32 and int8 (NHWC interface) against the onnxruntime target's fp32
and int8 artifacts, all built by edgec from the same model and calibration set, all timed
by the artifact's own harness (`run.py bench`, what runs on the device) with 2 threads.
Variants are benchmarked in interleaved rounds so that load from other processes hits all
of them alike; each number is the median over rounds of the harness's p50.

    python benchmarks/tflite_mobilenet.py [--rounds 5 --iters 100]

Writes benchmarks/results/tflite_mobilenet.json and .md.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
from common import MOBILENET, cpu_name, load_average, write_results

THREADS = 2

VARIANTS = {
    "edgec tflite-arm fp32": ("tflite-arm", "fp32", {"io_layout": "nhwc"}),
    "edgec tflite-arm int8": ("tflite-arm", "int8", {"io_layout": "nhwc"}),
    "edgec onnxruntime fp32": ("onnxruntime", "fp32", {}),
    "edgec onnxruntime int8 (QDQ)": ("onnxruntime", "int8", {}),
}


def main() -> None:
    from edgec import api

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    source = MOBILENET / "mobilenet_v2.onnx"
    if not source.exists():
        raise SystemExit("mobilenet_v2.onnx is missing: run models/mobilenet_v2/fetch.py and export.py")
    calibration = MOBILENET / "calibration.npz"
    with tempfile.TemporaryDirectory(prefix="edgec-bench-tflite-") as tmp:
        artifacts, builds = {}, {}
        for name, (target, precision, options) in VARIANTS.items():
            folder = Path(tmp) / name.replace(" ", "_").replace("(", "").replace(")", "")
            artifact = api.build(str(source), target, folder, precision=precision, force=True, options=options,
                                 calibration=str(calibration) if precision == "int8" else None)
            if not artifact.verified:
                raise SystemExit(f"{name} did not pass verification")
            manifest = artifact.manifest
            artifacts[name] = folder
            delegation = manifest.verification.result.runtime_checks.get("xnnpack_delegation")
            builds[name] = {"model_bytes": manifest.model.bytes, "build_seconds": manifest.build.seconds,
                            "operators": getattr(manifest.backend, "operators", None),
                            "xnnpack": delegation.detail if delegation else None}
        rounds = {name: [] for name in artifacts}
        for _ in range(args.rounds):
            for name, folder in artifacts.items():
                report = api.bench(folder, warmup=args.warmup, iters=args.iters, threads=THREADS)
                rounds[name].append(report)
    latency = {name: {"p50_ms": float(np.median([r["p50_ms"] for r in rs])),
                      "p90_ms": float(np.median([r["p90_ms"] for r in rs])),
                      "min_ms": float(min(r["min_ms"] for r in rs)),
                      "load_time_ms": float(np.median([r["load_time_ms"] for r in rs]))} for name, rs in rounds.items()}
    from importlib.metadata import version

    result = {
        "machine": {"cpu": cpu_name(), "threads": THREADS, "python": platform.python_version(),
                    "load_average_after": load_average()},
        "versions": {"ai-edge-litert": version("ai-edge-litert"), "onnxruntime": version("onnxruntime")},
        "method": {"rounds": args.rounds, "iters": args.iters, "warmup": args.warmup, "batch": 1,
                   "timer": "artifact harness `run.py bench` (includes the Python call, about 0.05 ms)",
                   "statistic": "median over rounds of the harness p50; min over all runs"},
        "latency": latency,
        "builds": builds,
    }
    write_results("tflite_mobilenet", result, markdown(result))


def markdown(r: dict) -> str:
    lines = [f"MobileNetV2 (224x224, batch 1) on {r['machine']['cpu']}, {r['machine']['threads']} threads; "
             f"ai-edge-litert {r['versions']['ai-edge-litert']}, onnxruntime {r['versions']['onnxruntime']}. "
             f"{r['method']['rounds']} interleaved rounds of {r['method']['iters']} runs through each artifact's "
             f"harness; load average after the run: {r['machine']['load_average_after']}.", "",
             "| artifact | p50 ms | p90 ms | min ms | model MB |", "| --- | --- | --- | --- | --- |"]
    for name, lat in r["latency"].items():
        lines.append(f"| {name} | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | {lat['min_ms']:.2f} | "
                     f"{r['builds'][name]['model_bytes'] / 1e6:.1f} |")
    return "\n".join(lines) + "\n"



if __name__ == "__main__":
    main()
