"""onnxruntime target: MobileNetV2 fp32 against int8 (and fp16 weights), in one run on this machine.

Both artifacts are built by edgec and timed by their own harness (`run.py bench`), in
alternating rounds so that load on a shared machine affects both alike. Writes
benchmarks/results/quantization_mobilenet.{json,md}.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from common import ROOT, cpu_name, write_results

MODEL = ROOT / "models/mobilenet_v2/mobilenet_v2.onnx"
CALIB = ROOT / "models/mobilenet_v2/calibration.npz"
ROUNDS, ITERS, THREADS = 5, 100, 2


def edgec(*args):
    subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], check=True, capture_output=True)


def bench(artifact: Path) -> dict:
    out = artifact.parent / f"{artifact.name}-bench.json"
    subprocess.run([sys.executable, artifact / "run.py", "bench", "--warmup", "20", "--iters", str(ITERS),
                    "--threads", str(THREADS), "--json", out], check=True, capture_output=True)
    return json.loads(out.read_text())



def main() -> None:
    precisions = ("fp32", "int8", "fp16")
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {p: Path(tmp) / p for p in precisions}
        for p, out in artifacts.items():
            edgec("build", MODEL, "-o", out, "--precision", p, "--calibration", CALIB)
        runs = {p: [] for p in precisions}
        for _ in range(ROUNDS):
            for p in precisions:
                runs[p].append(bench(artifacts[p]))
        sizes = {p: json.loads((artifacts[p] / "edgec.json").read_text())["model"]["bytes"] for p in precisions}
    rows = {p: {"p50_ms": statistics.median(r["p50_ms"] for r in runs[p]),
                "mean_ms": statistics.median(r["mean_ms"] for r in runs[p]),
                "p90_ms": statistics.median(r["p90_ms"] for r in runs[p]),
                "model_bytes": sizes[p]} for p in precisions}
    result = {
        "benchmark": "onnxruntime MobileNetV2 fp32 vs int8 vs fp16-weights",
        "date": date.today().isoformat(), "cpu": cpu_name(), "threads": THREADS,
        "rounds": ROUNDS, "iters_per_round": ITERS, "results": rows,
        "int8_speedup_p50": rows["fp32"]["p50_ms"] / rows["int8"]["p50_ms"],
        "int8_size_ratio": sizes["int8"] / sizes["fp32"],
    }
    lines = [f"MobileNetV2 224x224, onnxruntime target, {THREADS} threads, {cpu_name()}, {result['date']} "
             f"(median of {ROUNDS} alternating rounds of {ITERS} runs)", "",
             "| precision | p50 ms | mean ms | p90 ms | size MB | speed-up vs fp32 |", "|---|---|---|---|---|---|"]
    for p in precisions:
        r = rows[p]
        lines.append(f"| {p} | {r['p50_ms']:.2f} | {r['mean_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['model_bytes'] / 1e6:.2f} | {rows['fp32']['p50_ms'] / r['p50_ms']:.2f}x |")
    write_results("quantization_mobilenet", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
