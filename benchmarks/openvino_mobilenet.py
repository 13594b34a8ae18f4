"""MobileNetV2 on this machine's CPU: edgec openvino-cpu int8 against the pipelines people write by hand.

In one run, on the same calibration set (models/mobilenet_v2/calibration.npz) and threads:
  - edgec openvino-cpu int8, default quantizer (edgec's QDQ graph) and --quantizer nncf,
    each timed through the artifact's own harness adapter (what runs on the device);
  - the plain OpenVINO pipeline: `ov.convert_model` + `nncf.quantize` with its defaults,
    compiled with OpenVINO's default CPU settings;
  - onnxruntime fp32 on the source ONNX model.
Variants are timed in interleaved rounds so that load from other processes hits all of them
alike; each number is the median over rounds of the per-round median latency. Accuracy is
agreement with PyTorch fp32 on the bundled photos (top-1, and fp32 top-1 within top-5), and
digits test accuracy for both int8 quantizers.

    python benchmarks/openvino_mobilenet.py [--rounds 7 --iters 100]

Writes benchmarks/results/openvino_mobilenet.json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from common import MOBILENET, ROOT, agreement, cpu_name, load_average, photos, write_results

DIGITS = ROOT / "models" / "digits"
THREADS = 2



def build(source: Path, out: Path, calibration: Path, quantizer: str, **extra):
    from edgec import api

    return api.build(str(source), "openvino-cpu", out, precision="int8", calibration=str(calibration),
                     force=True, options={"quantizer": quantizer, **extra})


def harness_session(artifact: Path):
    """The artifact's runtime adapter, opened as run.py opens it on the device."""
    from edgec.package.harness.commands import load_manifest, session_class

    manifest = load_manifest(artifact)
    return session_class(manifest)(str(artifact), manifest, THREADS)


def plain_openvino(onnx_path: Path, calib: np.ndarray):
    """What a user writes from the OpenVINO and NNCF docs: convert, quantize with defaults, compile."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(onnx_path), input=[1, *calib.shape[1:]])
    quantized = nncf.quantize(model, nncf.Dataset([calib[i : i + 1] for i in range(len(calib))]))
    return ov.Core().compile_model(quantized, "CPU").create_infer_request()


def onnxruntime_fp32(onnx_path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def timed(run, iters: int) -> np.ndarray:
    times = np.empty(iters)
    for i in range(iters):
        start = time.perf_counter()
        run()
        times[i] = (time.perf_counter() - start) * 1000.0
    return times



def digits_accuracy(tmp: Path) -> dict:
    """Test accuracy of the digits CNN in fp32 and int8 from both quantizers (200 calibration images)."""
    split = np.load(DIGITS / "split.npz")
    calib = tmp / "digits_calib.npz"
    np.savez(calib, input=split["x_calib"])
    result = {"fp32_pytorch": json.loads((DIGITS / "metrics.json").read_text()).get("test_accuracy")}
    for quantizer in ("edgec", "nncf"):
        session = harness_session(_built(build(DIGITS / "digits_cnn.onnx", tmp / f"digits_{quantizer}", calib,
                                               quantizer)))
        predictions = [session.run({"input": x[None]})["logits"].argmax() for x in split["x_test"]]
        result[f"int8_{quantizer}"] = float(np.mean(np.array(predictions) == split["y_test"]))
    return result


def _built(artifact) -> Path:
    if not artifact.verified:
        raise SystemExit(f"{artifact.path} did not pass verification")
    return artifact.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    onnx_path = MOBILENET / "mobilenet_v2.onnx"
    if not onnx_path.exists():
        raise SystemExit("mobilenet_v2.onnx is missing: run models/mobilenet_v2/fetch.py and export.py")
    x, reference = photos()
    feed = x[:1]
    with tempfile.TemporaryDirectory(prefix="edgec-bench-ov-") as tmp:
        tmp = Path(tmp)
        calib = MOBILENET / "calibration.npz"
        with np.load(calib) as data:
            calib_x = data["input"]
        variants, builds = {}, {}
        for quantizer in ("edgec", "nncf"):
            folder = tmp / f"mobilenet_{quantizer}"
            started = time.perf_counter()
            artifact = build(onnx_path, folder, calib, quantizer)
            builds[quantizer] = {"seconds": round(time.perf_counter() - started, 1),
                                 "int8_layers": len(artifact.manifest.backend.int8_layers),
                                 "model_bytes": artifact.manifest.model.bytes}
            session = harness_session(_built(artifact))
            variants[f"edgec openvino-cpu int8 ({quantizer} quantizer)"] = (
                lambda s=session: s.run({"input": feed}),
                lambda s=session: np.concatenate([s.run({"input": x[i:i + 1]})["logits"] for i in range(len(x))]),
                session)
        plain = plain_openvino(onnx_path, calib_x)
        variants["plain OpenVINO + NNCF defaults int8"] = (
            lambda: plain.infer({0: feed}),
            lambda: np.concatenate([plain.infer({0: x[i:i + 1]})[0].copy() for i in range(len(x))]), None)
        ort_session = onnxruntime_fp32(onnx_path)
        variants["onnxruntime fp32"] = (
            lambda: ort_session.run(None, {"input": feed}),
            lambda: np.concatenate([ort_session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))]), None)

        accuracy = {name: agreement(v[1](), reference) for name, v in variants.items()}
        rounds = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (run, _, _) in variants.items():
                timed(run, args.warmup)
                times = timed(run, args.iters)
                rounds[name].append([float(np.median(times)), float(np.percentile(times, 90)), float(times.min())])
        from edgec.backends.openvino import DEFAULT_QUANTIZER

        edgec_default = f"edgec openvino-cpu int8 ({DEFAULT_QUANTIZER} quantizer)"
        throughput = variants[edgec_default][2].throughput({"input": feed}, args.iters * 3)
        digits = digits_accuracy(tmp)

    latency = {name: {"median_ms": float(np.median([r[0] for r in rs])), "p90_ms": float(np.median([r[1] for r in rs])),
                      "min_ms": float(min(r[2] for r in rs))} for name, rs in rounds.items()}
    edgec_ms = latency[edgec_default]["median_ms"]
    import nncf
    import onnxruntime
    import openvino

    result = {
        "machine": {"cpu": cpu_name(), "cores_used": THREADS, "python": platform.python_version(),
                    "load_average_after": load_average()},
        "versions": {"openvino": openvino.get_version().split("-")[0], "nncf": nncf.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "method": {"rounds": args.rounds, "iters_per_round": args.iters, "warmup_per_round": args.warmup,
                   "batch": 1, "calibration": "models/mobilenet_v2/calibration.npz (64 crops)", "statistic": "median over rounds of the "
                   "per-round median; p90 likewise; min over all runs"},
        "latency": latency,
        "edgec_default": edgec_default,
        "ratios": {"plain_openvino_over_edgec": latency["plain OpenVINO + NNCF defaults int8"]["median_ms"] / edgec_ms,
                   "onnxruntime_fp32_over_edgec": latency["onnxruntime fp32"]["median_ms"] / edgec_ms,
                   "edgec_quantizer_over_nncf_quantizer":
                       latency["edgec openvino-cpu int8 (edgec quantizer)"]["median_ms"]
                       / latency["edgec openvino-cpu int8 (nncf quantizer)"]["median_ms"]},
        "edgec_throughput_mode": throughput,
        "accuracy_mobilenet_vs_pytorch_fp32": accuracy,
        "accuracy_digits_test": digits,
        "edgec_builds": builds,
    }
    write_results("openvino_mobilenet", result, markdown(result))


def markdown(r: dict) -> str:
    lines = [f"MobileNetV2 (224x224, batch 1) on {r['machine']['cpu']}, {r['machine']['cores_used']} threads; "
             f"OpenVINO {r['versions']['openvino']}, NNCF {r['versions']['nncf']}, onnxruntime "
             f"{r['versions']['onnxruntime']}. {r['method']['rounds']} interleaved rounds of "
             f"{r['method']['iters_per_round']} runs; load average after the run: {r['machine']['load_average_after']}.",
             "", "| pipeline | median ms | p90 ms | min ms | top-1 = fp32 | fp32 top-1 in top-5 | max logit err |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, lat in r["latency"].items():
        acc = r["accuracy_mobilenet_vs_pytorch_fp32"][name]
        lines.append(f"| {name} | {lat['median_ms']:.2f} | {lat['p90_ms']:.2f} | {lat['min_ms']:.2f} | "
                     f"{acc['top1_agreement']:.0%} | {acc['fp32_top1_in_top5']:.0%} | {acc['max_abs_logit_err']:.2f} |")
    ratios = r["ratios"]
    d = r["accuracy_digits_test"]
    t = r["edgec_throughput_mode"]
    lines += ["", f"Against edgec's default ({r['edgec_default']}): plain OpenVINO latency "
              f"{ratios['plain_openvino_over_edgec']:.2f}x, onnxruntime fp32 {ratios['onnxruntime_fp32_over_edgec']:.2f}x; "
              f"--quantizer edgec / --quantizer nncf: {ratios['edgec_quantizer_over_nncf_quantizer']:.2f}x.",
              f"edgec throughput mode ({t['requests']} requests, {t['streams']} streams): "
              f"{t['inferences_per_s']:.0f} inferences/s.",
              f"Digits test accuracy: PyTorch fp32 {d['fp32_pytorch']:.2%}, edgec int8 {d['int8_edgec']:.2%}, "
              f"NNCF int8 {d['int8_nncf']:.2%}.", ""]
    return "\n".join(lines)




if __name__ == "__main__":
    main()
