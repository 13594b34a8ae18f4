"""int8 for a transformer on tflite-arm: TFLite's dynamic-range (hybrid) kernels against fp32 and full-integer int8.

The model is the corpus MiniLM (all-MiniLM-L6-v2, real weights, int64 token ids of real sentences). In one
run: tflite-arm fp32; tflite-arm int8 as the build chooses it (the `dynamic-range` candidate: int8
per-channel weights, each input row quantized at run time); tflite-arm int8 forced to `full-int8`
(calibrated per-tensor activation ranges: it does not verify, and lands in OUT.unverified/); and
onnxruntime's int8 with run-time ranges (its `s8-dynamic` candidate) as the peer. Each artifact is
built by edgec, run by its own harness on the 8 real sentences against the ONNX model (embedding
cosine) and timed by its harness (`run.py bench`) in interleaved rounds; each latency is the median
over rounds of the harness's p50.

    python benchmarks/tflite_hybrid.py [--rounds 5 --iters 50]

Needs the corpus (`make corpus`). Writes benchmarks/results/tflite_hybrid.json and .md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import ROOT, harness_run_header, harness_run_record, interleaved_latency, write_results

THREADS = 2
MODEL = "minilm_l6"
VARIANTS = {  # name: (target, precision, options)
    "tflite-arm fp32": ("tflite-arm", "fp32", {}),
    "tflite-arm int8 (build's choice)": ("tflite-arm", "int8", {}),
    "tflite-arm int8 full-int8": ("tflite-arm", "int8", {"int8_scheme": "full-int8"}),
    "onnxruntime int8 s8-dynamic": ("onnxruntime", "int8", {"int8_scheme": "s8-dynamic"}),
}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from edgec import api
    from models.corpus.measure import artifact_outputs, compare
    from models.corpus.reference import reference_outputs
    from models.corpus.registry import BY_NAME

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    model = BY_NAME[MODEL]
    reference = reference_outputs(model)
    shapes = tuple(flag.split("=", 1)[1] for flag in model.build_flags() if flag.startswith("--input-shape="))
    with tempfile.TemporaryDirectory(prefix="edgec-bench-hybrid-") as tmp:
        artifacts, builds = {}, {}
        for name, (target, precision, options) in VARIANTS.items():
            built = api.build(str(model.onnx_path), target, Path(tmp) / name.replace(" ", "_"), precision=precision,
                              input_shapes=shapes, calibration=str(model.inputs_path), force=True, options=options)
            manifest, quantization = built.manifest, built.manifest.quantization
            comparison = compare(model, reference, artifact_outputs(model, built.path))
            delegation = manifest.verification.result.runtime_checks.get("xnnpack_delegation")
            builds[name] = {"verified": built.verified, "model_bytes": manifest.model.bytes,
                            "scheme": quantization.scheme_choice.chosen if quantization and quantization.scheme_choice
                            else None, "cosine": comparison.task, "error_over_range": comparison.error_over_range,
                            "build_seconds": manifest.build.seconds,
                            "xnnpack": delegation.detail if delegation else None}
            artifacts[name] = built.path
        latency = interleaved_latency(artifacts, args.rounds, args.warmup, args.iters, THREADS)
    result = {**harness_run_record(args, THREADS), "latency": latency, "builds": builds,
              "model": "all-MiniLM-L6-v2 (corpus minilm_l6), 32 tokens, embedding output; 8 real sentences"}
    write_results("tflite_hybrid", result, markdown(result))


def markdown(r: dict) -> str:
    fp32 = r["latency"]["tflite-arm fp32"]["p50_ms"]
    lines = [harness_run_header(r), "",
             "| artifact | scheme | verified | embedding cosine | p50 ms | x tflite fp32 | model MB | outside XNNPACK |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, lat in r["latency"].items():
        build = r["builds"][name]
        lines.append(f"| {name} | {build['scheme'] or '-'} | {'yes' if build['verified'] else 'no'} | "
                     f"{build['cosine']:.4f} | {lat['p50_ms']:.2f} | {lat['p50_ms'] / fp32:.2f} | "
                     f"{build['model_bytes'] / 1e6:.1f} | {build['xnnpack'] or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
