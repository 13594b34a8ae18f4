"""What every benchmark shares: the machine's description, the bundled photos and how to score them."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MOBILENET = ROOT / "models" / "mobilenet_v2"
RESULTS = ROOT / "benchmarks" / "results"


def show_edgec_log() -> None:
    """edgec's progress lines on stderr with the time, as a benchmark's log."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s]   %(message)s", "%H:%M:%S"))
    edgec = logging.getLogger("edgec")
    edgec.addHandler(handler)
    edgec.setLevel(logging.INFO)
    edgec.propagate = False  # some libraries configure the root logger when imported


def output_kinds(onnx_path) -> list[str]:
    """Each output's kind as edgec's verification policy reads it from the graph: top-1 agreement is
    measured on the first output that is class scores, as the build's choices measure it."""
    import onnx_ir as ir

    from edgec.package.policy import classify

    return [classify(value) for value in ir.load(str(onnx_path)).graph.outputs]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def load_average() -> str:
    """The 1-minute load: on a shared 2-core machine, the first thing to read next to a latency."""
    return Path("/proc/loadavg").read_text().split()[0]


def photos() -> tuple[np.ndarray, np.ndarray]:
    """The bundled photos as MobileNetV2 inputs [N,3,224,224], and PyTorch's fp32 logits for them."""
    sys.path.insert(0, str(MOBILENET))
    from preprocess import load_photos

    x, _, logits = load_photos()
    return x, logits


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Top-1 agreement, reference top-1 within top-5, and max abs logit error against the reference."""
    ref_top1 = reference.argmax(1)
    top5 = np.argsort(-logits, 1)[:, :5]
    return {"top1_agreement": float(np.mean(logits.argmax(1) == ref_top1)),
            "fp32_top1_in_top5": float(np.mean([ref_top1[i] in top5[i] for i in range(len(ref_top1))])),
            "max_abs_logit_err": float(np.abs(logits - reference).max())}


def write_results(name: str, result: dict, markdown: str) -> None:
    """benchmarks/results/NAME.json and NAME.md, which the README cites."""
    import json

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


def interleaved_latency(artifacts: dict, rounds: int, warmup: int, iters: int, threads: int) -> dict:
    """Each artifact timed by its own harness (`run.py bench`) in interleaved rounds, so that the machine's
    load falls on all alike: per artifact the median over rounds of the p50 and of the load time, and the
    fastest run."""
    from edgec import api

    runs = {name: [] for name in artifacts}
    for _ in range(rounds):
        for name, folder in artifacts.items():
            runs[name].append(api.bench(folder, warmup=warmup, iters=iters, threads=threads))
    return {name: {"p50_ms": float(np.median([r["p50_ms"] for r in rs])), "min_ms": float(min(r["min_ms"] for r in rs)),
                   "load_time_ms": float(np.median([r["load_time_ms"] for r in rs]))}
            for name, rs in runs.items()}


def harness_run_record(args, threads: int) -> dict:
    """The machine, runtime versions and method of a run timed with `interleaved_latency`."""
    import platform
    from importlib.metadata import version

    return {"machine": {"cpu": cpu_name(), "threads": threads, "python": platform.python_version(),
                        "load_average_after": load_average()},
            "versions": {"ai-edge-litert": version("ai-edge-litert"), "onnxruntime": version("onnxruntime")},
            "method": {"rounds": args.rounds, "iters": args.iters, "warmup": args.warmup, "batch": 1,
                       "timer": "artifact harness `run.py bench`",
                       "statistic": "median over rounds of the harness p50; min over all runs"}}


def harness_run_header(r: dict) -> str:
    """The sentence a results file of `harness_run_record` opens with."""
    return (f"{r['model']}, batch 1, on {r['machine']['cpu']}, {r['machine']['threads']} threads; "
            f"ai-edge-litert {r['versions']['ai-edge-litert']}, onnxruntime {r['versions']['onnxruntime']}. "
            f"{r['method']['rounds']} interleaved rounds of {r['method']['iters']} runs through each artifact's "
            f"harness; load average after the run: {r['machine']['load_average_after']} (a shared machine: "
            f"compare the rows with each other, not across runs).")
