"""edgec's int8 against each runtime's own default int8 pipeline, per corpus model, in one run.

For every model (the real-model corpus, MobileNetV2 included), on the same model and calibration data:
  - onnxruntime: edgec's onnxruntime int8 artifact against `quant_pre_process` + `quantize_static`
    with onnxruntime's defaults;
  - OpenVINO: edgec's openvino-cpu int8 artifact against `ov.convert_model` + `nncf.quantize` with
    NNCF's defaults.
All four and onnxruntime fp32 run on one thread in interleaved rounds (load from other processes hits
them alike; each round starts with another variant); a round's latency is its fastest run, a variant's
the median over rounds, and each ratio the median over rounds of edgec's over its peer's. Each round
times its own compilation of every variant: one compilation's memory placement is luck (six compilations
of NNCF's captcha CRNN model read 4.03-4.41 ms), and with 3 compilations reused over 9 rounds, a ratio of
the same NNCF settings on both sides still read 0.94x to 1.13x from run to run. Fidelity beside it: the worst output's SQNR against fp32 and, for class scores,
top-1 agreement, on the model's real inputs (calibration: the same inputs; MobileNetV2: its 64
calibration crops, judged on 56 other crops of its photos). A pipeline that fails on a model is a
result, not a crash. Beside each model: which int8 engine edgec's openvino-cpu build measured best
(its scheme candidates and NNCF, quantization.scheme_choice) and every candidate's measures.

    python benchmarks/int8_peers.py [--models mobilenet_v2,fer_emotion] [--rounds 7] [--pipelines openvino]

Writes benchmarks/results/int8_peers.json and .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from common import MOBILENET, RESULTS, ROOT, cpu_name, load_average, output_kinds, write_results

sys.path.insert(0, str(ROOT))
from models.corpus.registry import MODELS  # noqa: E402

RUNS_PER_ROUND = 10
ROUND_MS = 100.0  # and runs for at least this long
# each runtime's half of the benchmark: edgec's artifact and the runtime's own default pipeline
PIPELINES = {"onnxruntime": ("edgec onnxruntime", "onnxruntime default"),
             "openvino": ("edgec openvino-cpu", "openvino+nncf default")}
TARGETS = {"onnxruntime": "onnxruntime", "openvino": "openvino-cpu"}


def edgec_artifact(model, target: str, calibration: Path, out: Path, choices: dict, graphs: dict, **options):
    """edgec's int8 artifact for `target` (build `options` by name), and what opens it through its own harness
    adapter (each call a new session); its measured int8 choice goes into `choices`, and OpenVINO's runtime
    graph of it into `graphs`."""
    from edgec import api
    from edgec.package.harness.commands import load_manifest, session_class

    shapes = tuple(f"{n}:{','.join(map(str, d))}" for n, d in model.input_shapes.items())
    consts = tuple(f"{n}={v}" for n, v in model.const_inputs.items())
    built = api.build(str(model.onnx_path), target, out, precision="int8", calibration=str(calibration),
                      input_shapes=shapes, const_inputs=consts, force=True, host_verify=False, options=options)
    manifest = load_manifest(built.path)
    if manifest.quantization.scheme_choice is not None:
        choice = manifest.quantization.scheme_choice
        choices[target] = {"chosen": choice.chosen, "why": choice.why, "replay": choice.replay,
                           "candidates": [dataclasses.asdict(c) for c in choice.candidates]}
    if manifest.quantization.float_precision_choice is not None:
        choice = manifest.quantization.float_precision_choice
        choices[f"{target} float precision"] = {"chosen": choice.chosen, "why": choice.why,
                                                 "candidates": [dataclasses.asdict(c) for c in choice.candidates]}
    if getattr(manifest.backend, "layers", None):
        graphs[f"edgec {target}"] = layer_counts(manifest.backend.layers)
    names = {spec.name for spec in manifest.inputs}
    outputs = [spec.name for spec in manifest.outputs]

    def open_session():
        session = session_class(manifest)(str(built.path), manifest, 1)

        def run(feed: dict) -> list:
            """The adapter's bare run, once per call as the peers' sessions run: no input checks timed."""
            results = session._run({k: v for k, v in feed.items() if k in names})
            return [results[n] for n in outputs]

        return run

    return open_session


def onnxruntime_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return lambda feed: session.run(None, {k: v for k, v in feed.items() if k in names})


def onnxruntime_default_int8(model, calib_feeds: list[dict], tmp: Path):
    """What onnxruntime's documentation has a user write: pre-process, then quantize_static's defaults."""
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader:
        def __init__(self):
            self.rows = iter(calib_feeds)

        def get_next(self):
            return next(self.rows, None)

    pre, out = tmp / "ort_pre.onnx", tmp / "ort_int8.onnx"
    try:
        quant_pre_process(str(model.onnx_path), str(pre))
    except Exception:  # its symbolic shape inference stops on some models; the documented way on is to skip it
        quant_pre_process(str(model.onnx_path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader())
    return lambda: onnxruntime_session(out)


def layer_counts(layers: list) -> dict:
    """What OpenVINO's compiled model executes (CompiledLayer records): how many layers, how many in int8,
    f32 and bf16, and FakeQuantize layers it could not fuse into the layer before."""
    return {"executed": len(layers), "int8": sum(layer.precision in ("u8", "i8") for layer in layers),
            "f32": sum(layer.precision == "f32" for layer in layers),
            "bf16": sum(layer.precision == "bf16" for layer in layers),
            "FakeQuantize": sum(layer.type == "FakeQuantize" for layer in layers)}


def openvino_default_int8(model, calib_feeds: list[dict], graphs: dict):
    """What OpenVINO's and NNCF's documentation has a user write: convert, quantize with defaults, compile."""
    import nncf
    import openvino as ov

    shapes = [(n, list(d)) for n, d in model.input_shapes.items()] or None
    converted = ov.convert_model(str(model.onnx_path), input=shapes) if shapes else ov.convert_model(
        str(model.onnx_path))
    names = [i.get_any_name() for i in converted.inputs]
    quantized = nncf.quantize(converted, nncf.Dataset([{n: f[n] for n in names} for f in calib_feeds]))
    from edgec.package.harness.rt_openvino import compiled_layers

    def compile_quantized():
        compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
        graphs["openvino+nncf default"] = layer_counts(compiled_layers(compiled))
        request = compiled.create_infer_request()
        return lambda feed: [v.copy() for v in request.infer({n: feed[n] for n in names}).values()]

    return compile_quantized


def latency(run, feed: dict) -> float:
    """A round's latency: the fastest of its runs after one warm-up, at least RUNS_PER_ROUND runs and
    ROUND_MS of them. On a shared machine the median run of a few-millisecond model is one another process
    interrupted; two compilations of one NNCF model read 0.90-1.44x each other by round medians, 0.99-1.03x
    by round fastest (PP-OCR cls, load 6). Ten runs of a sub-millisecond model are too few for a fastest:
    edgec's PP-OCR cls artifact, NNCF's own default graph kernel for kernel, read 1.08x its peer."""
    run(feed)
    times: list[float] = []
    while len(times) < RUNS_PER_ROUND or sum(times) < ROUND_MS:
        start = time.perf_counter()
        run(feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return min(times)


def one_sample_feeds(images: np.ndarray) -> list[dict]:
    """One feed per image, views of the one array (NpzFile reads an array again at every access)."""
    return [{"input": images[i : i + 1]} for i in range(len(images))]


def compare(model, rounds: int, tmp: Path, pipelines: list[str]) -> dict:
    from edgec.quantize.choose import agreement, sqnr

    feeds = model.samples(model.load_inputs())
    if model.name == "mobilenet_v2":
        from compression import photo_crops

        calibration = MOBILENET / "calibration.npz"
        with np.load(calibration) as data:
            calib_feeds = one_sample_feeds(data["input"])
        with np.load(photo_crops(tmp)["unseen"]) as data:
            feeds = one_sample_feeds(data["input"])
    else:
        calibration, calib_feeds = model.calibration_file(tmp), feeds
    makers = {  # each makes what opens its variant: one compilation per call
        "fp32": lambda: lambda: onnxruntime_session(model.onnx_path),
        "edgec onnxruntime": lambda: edgec_artifact(model, "onnxruntime", calibration, tmp / "ort", choices, graphs),
        "onnxruntime default": lambda: onnxruntime_default_int8(model, calib_feeds, tmp),
        "edgec openvino-cpu": lambda: edgec_artifact(model, "openvino-cpu", calibration, tmp / "ov", choices, graphs),
        "openvino+nncf default": lambda: openvino_default_int8(model, calib_feeds, graphs),
    }
    wanted = {"fp32", *(name for pipeline in pipelines for name in PIPELINES[pipeline])}
    makers = {name: make for name, make in makers.items() if name in wanted}
    copies, failed, choices, graphs = {}, {}, {}, {}
    for name, make in makers.items():
        try:
            opener = make()
            copies[name] = [opener() for _ in range(rounds)]  # one compilation per round
            for run in copies[name]:
                run(feeds[0])
        except Exception as exc:  # a pipeline that cannot build or run this model is a result
            copies.pop(name, None)
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    reference = [np.stack(values) for values in zip(*(copies["fp32"][0](f) for f in feeds))]
    kinds = output_kinds(model.onnx_path)
    row = {"model": model.name, "failed": failed, "variants": {}, "choices": choices, "runtime_graphs": graphs}
    for name, (run, *_) in copies.items():
        outputs = [np.stack(values) for values in zip(*(run(f) for f in feeds))]
        agrees = agreement(reference, outputs, kinds)
        row["variants"][name] = {"sqnr_db": round(sqnr(reference, outputs), 2),
                                 "top1": None if agrees is None else round(float(100 * agrees.mean()), 1)}
    timings = {name: [] for name in copies}
    order = list(copies)
    for index in range(rounds):  # each round starts one variant later: none always runs after the same one
        for name in order[index % len(order):] + order[:index % len(order)]:
            timings[name].append(latency(copies[name][index], feeds[0]))
    for name in copies:
        row["variants"][name]["ms"] = round(statistics.median(timings[name]), 3)
    for ours, peer in PIPELINES.values():
        if ours in copies and peer in copies:  # the median of each round's ratio: both timed seconds apart
            ratios = [a / b for a, b in zip(timings[ours], timings[peer])]
            row[f"{ours} / {peer}"] = round(statistics.median(ratios), 3)
    return row


def markdown(rows: list[dict], rounds: int) -> str:
    pairs = tuple(f"{ours} / {peer}" for ours, peer in PIPELINES.values())
    lines = [f"edgec int8 against the runtimes' default int8 pipelines, 1 thread, {cpu_name()}, "
             f"{date.today().isoformat()}, load average {load_average()} (shared machine: noisy); median of "
             f"{rounds} interleaved rounds of at least {RUNS_PER_ROUND} runs and {ROUND_MS:.0f} ms, each round its own compilation of each variant: a round's fastest run, a ratio the median of the rounds' "
             "ratios (rows marked p50 are from earlier runs that took each round's median run). Fidelity: worst-output SQNR against fp32, "
             "top-1 agreement where the output is class scores. Each runtime's half of a model's row is one "
             "interleaved run with fp32; rows and halves may come from separate runs (`--models`, `--pipelines`).", "",
             "| model | variant | ms | SQNR dB | top-1 % |", "|---|---|---|---|---|"]
    for row in rows:
        for name, v in row["variants"].items():
            top1 = "" if v["top1"] is None else f"{v['top1']:.1f}"
            ms = f"{v['ms']:.2f}" if "ms" in v else f"{v['p50_ms']:.2f} (p50)"
            lines.append(f"| {row['model']} | {name} | {ms} | {v['sqnr_db']:.1f} | {top1} |")
        for name, why in row["failed"].items():
            lines.append(f"| {row['model']} | {name} | failed: {why} | | |")
    lines += ["", "| model | " + " | ".join(pairs) + " |", "|---|---|---|"]
    def ratio(row: dict, pair: str) -> str:
        if pair not in row:
            return "-"
        earlier = "ms" not in row["variants"][pair.split(" / ")[0]]  # a run that took round medians
        return f"{row[pair]:.2f}x" + (" (p50)" if earlier else "")

    for row in rows:
        lines.append(f"| {row['model']} | " + " | ".join(ratio(row, p) for p in pairs) + " |")
    medians = [statistics.median(r[p] for r in rows if p in r) if any(p in r for r in rows) else None for p in pairs]
    lines.append("| **median** | " + " | ".join(f"**{m:.2f}x**" if m else "-" for m in medians) + " |")
    lines += ["", "OpenVINO's compiled runtime graphs (executed layers; those in int8, f32 and bf16; FakeQuantize left "
              "unfused):", "", "| model | variant | layers | int8 | f32 | bf16 | FakeQuantize |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        for name, g in row.get("runtime_graphs", {}).items():
            lines.append(f"| {row['model']} | {name} | {g['executed']} | {g['int8']} | {g['f32']} | {g.get('bf16', '-')} "
                         f"| {g['FakeQuantize']} |")
    lines += ["", "edgec's openvino-cpu int8 choice, measured by the build with OpenVINO's kernels on its calibration "
              "samples (p50: fastest of 5 runs, median over 7 rounds, one thread):", "",
              "| model | candidate | p50 ms | SQNR dB | top-1 % | chosen |", "|---|---|---|---|---|---|"]
    for row in rows:
        choice = row.get("choices", {}).get("openvino-cpu")
        for c in choice["candidates"] if choice else []:
            top1 = "" if c["top1_agreement"] is None else f"{c['top1_agreement']:.1f}"
            mark = f"**yes**: {choice['why']}" if c["name"] == choice["chosen"] else ""
            lines.append(f"| {row['model']} | {c['name']} | {c['p50_ms']:.2f} | {c['sqnr_db']:.1f} | {top1} | {mark} |")
    lines += ["", "What the openvino-cpu artifact's layers without an int8 kernel compute in (`--float-precision auto`, "
              "quantization.float_precision_choice):", "", "| model | chosen | why |", "|---|---|---|"]
    for row in rows:
        choice = row.get("choices", {}).get("openvino-cpu float precision")
        if choice:
            lines.append(f"| {row['model']} | {choice['chosen']} | {choice['why']} |")
    return "\n".join(lines) + "\n"


def merged(earlier: dict | None, row: dict, pipelines: list[str]) -> dict:
    """`row`, with the halves of the `earlier` row of its model that were not re-run."""
    if earlier is None:
        return row
    kept = [pipeline for pipeline in PIPELINES if pipeline not in pipelines]
    names = {name for pipeline in kept for name in PIPELINES[pipeline]}
    ratios = {" / ".join(PIPELINES[pipeline]) for pipeline in kept}
    targets = {TARGETS[pipeline] for pipeline in kept}

    def part(table: str, keys: set) -> dict:
        return {k: v for k, v in earlier.get(table, {}).items() if k in keys}

    return {**{k: v for k, v in earlier.items() if k in ratios}, **row,
            "variants": {**part("variants", names), **row["variants"]},
            "failed": {**part("failed", names), **row["failed"]},
            "choices": {**part("choices", targets | {f"{t} float precision" for t in targets}), **row["choices"]},
            "runtime_graphs": {**part("runtime_graphs", names), **row["runtime_graphs"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help="the halves to run: " + ", ".join(PIPELINES))
    args = parser.parse_args()
    wanted, pipelines = args.models.split(","), args.pipelines.split(",")
    earlier = RESULTS / "int8_peers.json"  # what is not re-run now is kept: each half of a row is its own run
    rows = {r["model"]: r for r in json.loads(earlier.read_text())["rows"]} if earlier.exists() else {}
    for model in (m for m in MODELS if m.name in wanted):
        with tempfile.TemporaryDirectory(prefix=f"edgec-peers-{model.name}-") as tmp:
            row = compare(model, args.rounds, Path(tmp), pipelines)
        rows[model.name] = merged(rows.get(model.name), row, pipelines)
        print(row, flush=True)
    rows = [rows[m.name] for m in MODELS if m.name in rows]
    result = {"benchmark": "edgec int8 vs onnxruntime and OpenVINO+NNCF default int8", "date": date.today().isoformat(),
              "cpu": cpu_name(), "threads": 1, "rounds": args.rounds, "runs_per_round": RUNS_PER_ROUND, "round_ms": ROUND_MS, "compilations": "one per round", "rows": rows}
    write_results("int8_peers", result, markdown(rows, args.rounds))


if __name__ == "__main__":
    main()
