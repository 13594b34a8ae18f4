"""MobileNetV2 for LiteRT: edgec's tflite-arm target against onnx2tf, the usual ONNX-to-TFLite converter.

In one run on this machine:
  1. edgec builds models/mobilenet_v2/mobilenet_v2.onnx for tflite-arm in fp32 and in int8
     (the 64 crops of models/mobilenet_v2/calibration.npz, NHWC int8 I/O, like onnx2tf's
     full-integer model), each `edgec build` timed as a subprocess, wall clock;
  2. onnx2tf converts the same file in fp32 and with -oiqt (full-integer int8), calibrated on
     the same 64 images through -cind, timed the same way. onnx2tf pins old numpy, onnx,
     onnxruntime and protobuf, so it lives in its own venv (benchmarks/.work/onnx2tf-venv),
     made here once and reused;
  3. every .tflite runs in this venv's LiteRT interpreter (XNNPACK, 2 threads, the same photo),
     in many short interleaved rounds so load from other processes hits all models alike; p50
     and mean over all timed runs, and the spread of the per-round ratio as the noise. Accuracy
     is agreement with PyTorch fp32 on the bundled photos; per-operator times (the harness's
     one-operator models) explain any latency gap;
  4. writes benchmarks/results/tflite_vs_onnx2tf.json and .md.

    python benchmarks/tflite_vs_onnx2tf.py [--rounds 20 --iters 30 --warmup 20]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import MOBILENET, ROOT, agreement, cpu_name, load_average, photos, write_results

SOURCE = MOBILENET / "mobilenet_v2.onnx"
CALIBRATION = MOBILENET / "calibration.npz"
WORK = ROOT / "benchmarks" / ".work" / "tflite_vs_onnx2tf"
VENV = ROOT / "benchmarks" / ".work" / "onnx2tf-venv"
THREADS = 2

# onnx2tf's own pins, less `tensorflow` (the multi-GB GPU build: tensorflow-cpu is the same
# converter), opencv (only its ImageDecoder op imports it), onnxoptimizer (never imported) and
# simple-onnx-processing-tools (two of its twenty tools are used). Installed without their
# dependencies: onnx2tf and tf-keras would otherwise pull `tensorflow` back in.
NO_DEPS = ["onnx2tf==1.29.24", "tf-keras==2.19.0", "sng4onnx==2.0.1", "sne4onnx==2.0.1"]
DEPS = ["tensorflow-cpu==2.19.0", "numpy==1.26.4", "onnx==1.19.1", "onnxruntime==1.23.0", "onnxsim==0.4.36",
        "onnx-graphsurgeon==0.5.8", "psutil==5.9.5", "protobuf==4.25.5", "h5py==3.11.0", "ml-dtypes==0.5.1",
        "flatbuffers==25.12.19", "ai-edge-litert==2.1.0", "requests==2.32.5"]
# onnx2tf normalizes 0..1 RGB calibration images with these (ImageNet's, as edgec's calibration set).
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# Without this file in its working folder, onnx2tf downloads 20 MS-COCO images to test with.
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"

EDGEC_INT8, EDGEC_FP32 = "edgec tflite-arm int8", "edgec tflite-arm fp32"
ONNX2TF_INT8, ONNX2TF_FP32 = "onnx2tf full-integer int8", "onnx2tf fp32"


def ensure_model() -> None:
    """The fixture and its calibration set are made by scripts (not committed)."""
    for script, made in (("fetch.py", SOURCE), ("export.py", SOURCE), ("calibration.py", CALIBRATION)):
        if not made.exists():
            subprocess.run([sys.executable, str(MOBILENET / script)], check=True)


def onnx2tf_venv() -> Path:
    """onnx2tf's bin folder, in a venv of its own made once (its requirements list is the cache key)."""
    spec = "\n".join(NO_DEPS + DEPS) + "\n"
    marker = VENV / "edgec-requirements.txt"
    if marker.exists() and marker.read_text() == spec:
        return VENV / "bin"
    shutil.rmtree(VENV, ignore_errors=True)
    print(f"making {VENV} (about 2 minutes, once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["--no-deps", *NO_DEPS], check=True)
    subprocess.run(pip + DEPS, check=True)
    marker.write_text(spec)
    return VENV / "bin"


def onnx2tf_data(calibration: np.ndarray) -> Path:
    """edgec's calibration images as onnx2tf takes them: NHWC RGB in 0..1 (it normalizes them itself),
    and its test-image file made of 20 of them at 128x128, so that nothing is downloaded."""
    from skimage.transform import resize

    images = np.clip(calibration.transpose(0, 2, 3, 1) * STD + MEAN, 0.0, 1.0).astype(np.float32)
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "calibration_nhwc.npy"
    np.save(path, images)
    sample = np.stack([resize(image, (128, 128), order=1, anti_aliasing=True) for image in images[:20]])
    np.save(WORK / SAMPLE_FILE, sample.astype(np.float32))
    return path


def timed_run(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, float, list]:
    """(start epoch, wall seconds, [(seconds, line)]) of a command run to completion; its output,
    each line stamped with when it appeared, goes to `log`."""
    start = time.time()
    lines = []
    with open(log, "w") as out, subprocess.Popen(cmd, cwd=WORK, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        for line in proc.stdout:
            lines.append((time.time() - start, line.rstrip()))
            out.write(f"[{lines[-1][0]:7.1f}s] {line}")
    seconds = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}: see {log}")
    return start, seconds, lines


def stages(lines: list, marks: dict[str, str], seconds: float) -> dict:
    """Seconds between the log lines that open each named stage (first line containing its mark)."""
    starts = [(name, next(t for t, line in lines if mark in line)) for name, mark in marks.items()]
    ends = [t for _, t in starts[1:]] + [seconds]
    return {name: round(end - t, 1) for (name, t), end in zip(starts, ends)}


def edgec_build(precision: str) -> dict:
    out = WORK / f"edgec_{precision}"
    cmd = [str(Path(sys.executable).with_name("edgec")), "build", str(SOURCE), "--target", "tflite-arm",
           "--precision", precision, "--io-layout", "nhwc", "-o", str(out), "--force"]
    if precision == "int8":
        cmd += ["--calibration", str(CALIBRATION), "--io-dtype", "int8"]
    _, seconds, lines = timed_run(cmd, WORK / f"edgec_{precision}.log")
    manifest = json.loads((out / "edgec.json").read_text())
    if not manifest["verification"]["result"]["passed"]:
        raise SystemExit(f"edgec's {precision} artifact failed its verification: see {out}/edgec.json")
    marks = {"start-up, load, graph passes": "", "int8 calibration and per-layer error report": "calibrating",
             "lowering, packaging, verification": "lowering"} if precision == "int8" else {}
    return {"seconds": seconds, "model": out / manifest["model"]["main"],
            "command": shlex.join(["edgec", *cmd[1:]]).replace(str(ROOT) + "/", ""),
            "stages": stages([(0.0, "")] + lines, marks, seconds) if marks else None}


def onnx2tf_convert(bin_dir: Path, calibration_npy: Path, int8: bool) -> dict:
    """One onnx2tf conversion; with -oiqt it writes seven variants, so the full-integer file's
    own write time is recorded beside the whole run's."""
    name = "int8" if int8 else "fp32"
    out = WORK / f"onnx2tf_{name}"
    shutil.rmtree(out, ignore_errors=True)
    source = WORK / "mobilenet_v2.onnx"
    shutil.copyfile(SOURCE, source)  # onnxsim rewrites its input file in place
    cmd = [str(bin_dir / "onnx2tf"), "-i", source.name, "-o", out.name, "-ois", "input:1,3,224,224"]
    if int8:
        cmd += ["-oiqt", "-cind", "input", calibration_npy.name, json.dumps([[[MEAN]]]), json.dumps([[[STD]]])]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # it runs `onnxsim`
    start, seconds, _ = timed_run(cmd, WORK / f"onnx2tf_{name}.log", env)
    model = out / ("mobilenet_v2_full_integer_quant.tflite" if int8 else "mobilenet_v2_float32.tflite")
    return {"seconds": seconds, "model_written_s": model.stat().st_mtime - start, "model": model,
            "command": shlex.join(["onnx2tf", *cmd[1:]])}


class Model:
    """One .tflite in this venv's LiteRT interpreter (XNNPACK is its default CPU delegate)."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.interpreter = Interpreter(model_path=str(path), num_threads=THREADS)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def feed(self, x_nchw: np.ndarray) -> None:
        x = x_nchw if list(self.input["shape"]) == list(x_nchw.shape) else x_nchw.transpose(0, 2, 3, 1)
        scale, zero_point = self.input["quantization"]
        if np.issubdtype(self.input["dtype"], np.integer):
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.rint(x / scale) + zero_point, info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x, dtype=self.input["dtype"]))

    def logits(self, x_nchw: np.ndarray) -> np.ndarray:
        self.feed(x_nchw)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        scale, zero_point = self.output["quantization"]
        return (y.astype(np.float32) - zero_point) * scale if scale else y.astype(np.float32)



def model_agreement(model: Model, x: np.ndarray, reference: np.ndarray) -> dict:
    return agreement(np.concatenate([model.logits(x[i:i + 1]) for i in range(len(x))]), reference)


def latency(models: dict[str, Model], feed: np.ndarray, rounds: int, iters: int, warmup: int) -> dict:
    """Interleaved rounds, the order rotated each round; statistics over all timed invokes."""
    names = list(models)
    times = {name: [] for name in names}
    for model in models.values():
        model.feed(feed)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            invoke = models[name].interpreter.invoke
            for _ in range(warmup):
                invoke()
            for _ in range(iters):
                start = time.perf_counter()
                invoke()
                times[name].append((time.perf_counter() - start) * 1000.0)
    result = {}
    for name, ms in times.items():
        ms = np.array(ms)
        per_round = ms.reshape(rounds, iters)
        result[name] = {"p50_ms": float(np.median(ms)), "mean_ms": float(ms.mean()),
                        "p90_ms": float(np.percentile(ms, 90)), "min_ms": float(ms.min()),
                        "round_p50_ms": [round(float(np.median(x)), 3) for x in per_round], "runs": int(ms.size)}
    return result


def harness_checks(path: Path, iters: int) -> tuple[str, dict]:
    """XNNPACK delegation and milliseconds per operator type, through the artifact harness's LiteRT
    adapter (what `edgec verify` and `edgec profile` use), so both converters' models are measured
    one way."""
    spec = importlib.util.spec_from_file_location("edgec_rt_tflite", ROOT / "edgec" / "package" / "harness" /
                                                  "rt_tflite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    session = module.Session(str(path.parent), {"model": {"main": path.name}}, THREADS)
    by_type: dict[str, dict] = {}
    for record in session.profile(None, 10, iters):
        entry = by_type.setdefault(record["op"], {"count": 0, "ms": 0.0})
        entry["count"] += 1
        entry["ms"] += record["ms"]
    return (session.verify_checks()["xnnpack_delegation"]["detail"],
            {op: {"count": v["count"], "ms": round(v["ms"], 3)} for op, v in sorted(by_type.items())})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    ensure_model()
    bin_dir = onnx2tf_venv()
    with np.load(CALIBRATION) as data:
        calibration_npy = onnx2tf_data(data["input"])
    load_before = load_average()
    builds = {EDGEC_INT8: edgec_build("int8"), EDGEC_FP32: edgec_build("fp32"),
              ONNX2TF_INT8: onnx2tf_convert(bin_dir, calibration_npy, int8=True),
              ONNX2TF_FP32: onnx2tf_convert(bin_dir, calibration_npy, int8=False)}

    x, reference = photos()
    models = {name: Model(build["model"]) for name, build in builds.items()}
    accuracy = {name: model_agreement(model, x, reference) for name, model in models.items()}
    timing = latency(models, x[:1], args.rounds, args.iters, args.warmup)
    checks = {name: harness_checks(build["model"], 50) for name, build in builds.items()}

    variants = {}
    for name, build in builds.items():
        variants[name] = {"build_s": round(build["seconds"], 1), "command": build["command"],
                          "model_bytes": build["model"].stat().st_size,
                          "input": f"{list(models[name].input['shape'])} {np.dtype(models[name].input['dtype'])}",
                          "xnnpack": checks[name][0],
                          **{k: round(v, 4) for k, v in timing[name].items() if k != "round_p50_ms" and k != "runs"},
                          "round_p50_ms": timing[name]["round_p50_ms"], "runs": timing[name]["runs"],
                          **accuracy[name]}
        if "model_written_s" in build:
            variants[name]["model_written_s"] = round(build["model_written_s"], 1)
        if build.get("stages"):
            variants[name]["build_stages_s"] = build["stages"]
    e8, o8 = variants[EDGEC_INT8], variants[ONNX2TF_INT8]
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": THREADS,
                    "python": platform.python_version(), "load_average_before": load_before,
                    "load_average_after": load_average()},
        "versions": {"ai-edge-litert (benchmark interpreter)": _version("ai-edge-litert"),
                     "edgec": _version("edgec"), "onnx2tf venv": NO_DEPS + DEPS},
        "method": {"model": "models/mobilenet_v2/mobilenet_v2.onnx (ImageNet MobileNetV2, 224x224, batch 1)",
                   "calibration": "models/mobilenet_v2/calibration.npz (64 crops) for both tools",
                   "build_time": "wall clock of the whole `edgec build` / `onnx2tf` subprocess",
                   "latency": f"LiteRT Interpreter, XNNPACK, {THREADS} threads, one photo; {args.rounds} "
                              f"interleaved rounds of {args.warmup} warm-up + {args.iters} timed invokes; "
                              "p50/mean over all timed invokes",
                   "accuracy": "7 bundled photos vs PyTorch fp32 logits (models/mobilenet_v2/photos.npz)"},
        "variants": variants,
        "ratios": {
            "int8_latency_edgec_over_onnx2tf": e8["p50_ms"] / o8["p50_ms"],
            "int8_latency_edgec_over_onnx2tf_per_round": [round(a / b, 3) for a, b in
                                                          zip(e8["round_p50_ms"], o8["round_p50_ms"])],
            "int8_build_onnx2tf_over_edgec": o8["build_s"] / e8["build_s"],
            "int8_build_onnx2tf_full_integer_file_over_edgec": o8["model_written_s"] / e8["build_s"],
            "fp32_latency_edgec_over_onnx2tf": variants[EDGEC_FP32]["p50_ms"] / variants[ONNX2TF_FP32]["p50_ms"],
            "fp32_build_onnx2tf_over_edgec": variants[ONNX2TF_FP32]["build_s"] / variants[EDGEC_FP32]["build_s"],
        },
        "operator_ms": {name: checks[name][1] for name in builds},
    }
    write_results("tflite_vs_onnx2tf", result, markdown(result))


def markdown(r: dict) -> str:
    m, ratios = r["machine"], r["ratios"]
    lines = [f"MobileNetV2 (224x224, batch 1) to LiteRT on {m['cpu']} ({m['cores']} cores), {m['threads']} threads, "
             f"{r['date']}; ai-edge-litert {r['versions']['ai-edge-litert (benchmark interpreter)']} with XNNPACK "
             f"runs every model; onnx2tf {NO_DEPS[0].split('==')[1]} with {DEPS[0].replace('==', ' ')}. "
             f"{r['method']['latency']}. Load average {m['load_average_before']} before, "
             f"{m['load_average_after']} after.", "",
             "| tool | precision | build s | latency p50 ms | mean ms | size MB | top-1 = PyTorch | "
             "PyTorch top-1 in top-5 | max logit err |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, v in r["variants"].items():
        tool, precision = name.rsplit(" ", 1)
        build = f"{v['build_s']:.1f}" + (f" ({v['model_written_s']:.1f} to this file)" if "model_written_s" in v else "")
        lines.append(f"| {tool} | {precision} | {build} | {v['p50_ms']:.2f} | {v['mean_ms']:.2f} | "
                     f"{v['model_bytes'] / 1e6:.2f} | {v['top1_agreement']:.0%} | {v['fp32_top1_in_top5']:.0%} | "
                     f"{v['max_abs_logit_err']:.3g} |")
    latency, rounds = ratios["int8_latency_edgec_over_onnx2tf"], ratios["int8_latency_edgec_over_onnx2tf_per_round"]
    q1, median, q3 = np.percentile(rounds, [25, 50, 75])
    verdict = "met" if latency <= 1.0 else "equal within noise" if q1 <= 1.0 else "NOT met"
    lines += ["", f"- int8 latency, edgec / onnx2tf: **{latency:.3f}x** (p50 over all runs); per round median "
              f"{median:.3f}, quartiles {q1:.3f} to {q3:.3f} (goal: at most 1; {verdict})",
              f"- int8 build time, onnx2tf / edgec: **{ratios['int8_build_onnx2tf_over_edgec']:.1f}x** for the whole "
              f"`onnx2tf -oiqt` run, {ratios['int8_build_onnx2tf_full_integer_file_over_edgec']:.1f}x to its "
              f"full-integer file (goal: at least 10; {'met' if ratios['int8_build_onnx2tf_over_edgec'] >= 10 else 'NOT met'})",
              f"- fp32: latency edgec / onnx2tf {ratios['fp32_latency_edgec_over_onnx2tf']:.2f}x, build time "
              f"onnx2tf / edgec {ratios['fp32_build_onnx2tf_over_edgec']:.1f}x",
              "- where edgec's int8 build time goes (from its log): " + ", ".join(
                  f"{name} {s:.1f} s" for name, s in r["variants"][EDGEC_INT8]["build_stages_s"].items()),
              "- XNNPACK: " + "; ".join(f"{name}: {v['xnnpack']}" for name, v in r["variants"].items()), "",
              "int8 time per operator type (ms, each operator timed alone as in `edgec profile`, so without "
              "XNNPACK's fusions across operators):", "",
              "| operator | edgec count | edgec ms | onnx2tf count | onnx2tf ms |", "| --- | --- | --- | --- | --- |"]
    edgec_ops, onnx2tf_ops = r["operator_ms"][EDGEC_INT8], r["operator_ms"][ONNX2TF_INT8]
    for op in sorted(set(edgec_ops) | set(onnx2tf_ops)):
        e, o = edgec_ops.get(op, {"count": 0, "ms": 0.0}), onnx2tf_ops.get(op, {"count": 0, "ms": 0.0})
        lines.append(f"| {op} | {e['count']} | {e['ms']:.2f} | {o['count']} | {o['ms']:.2f} |")
    lines += ["", "Commands (onnx2tf runs in benchmarks/.work/tflite_vs_onnx2tf with its venv's bin on PATH):", ""] + [f"- `{v['command']}`" for v in r["variants"].values()] + [""]
    return "\n".join(lines)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)




if __name__ == "__main__":
    main()
