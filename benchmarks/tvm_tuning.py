"""MobileNetV2 on this machine: what MetaSchedule tuning buys edgec's tvm-x86 target.

In one run: TVM untuned, TVM after each rung of a tuning ladder (default 64, 256, 1024
trials, cumulative: each rung resumes from the previous rung's database and adds the
difference), and onnxruntime fp32. Every variant is an edgec artifact timed by its own
harness (`run.py bench`, what runs on the device), in interleaved rounds so that load from
other processes hits all of them alike; each number is the median of the per-round medians.
Each rung's tuning time is recorded; top-1 agreement with PyTorch on the bundled photos
checks that tuning changed the speed, not the answers.

Tuning MobileNetV2 takes long on 2 cores, so progress is kept: the database and artifacts
live in benchmarks/.work/tvm_tuning/, the results are rewritten after every step, and a
rerun skips the rungs already done (`--fresh` starts over).

    python benchmarks/tvm_tuning.py [--ladder 64,256,1024] [--rounds 5 --iters 20] [--fresh]

Writes benchmarks/results/tvm_tuning.json and .md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

import common
from common import MOBILENET, ROOT

SOURCE = MOBILENET / "mobilenet_v2.onnx"
WORK = ROOT / "benchmarks" / ".work" / "tvm_tuning"
DB = WORK / "db"
TARGET = "tvm-x86"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


common.show_edgec_log()

def relax_module():
    """MobileNetV2 as the tvm backend lowers it (same frontend, passes and Relax import)."""
    from edgec import frontends, passes
    from edgec import ir as eir
    from edgec.backends.tvm import TVMBackend

    model = frontends.load(str(SOURCE), [], None)
    eir.resolve_static_shapes(model)
    passes.optimize(model)
    return TVMBackend._relax(model, "fp32")


def build(name: str, target: str, **options) -> Path:
    from edgec import api

    out = WORK / name
    api.build(str(SOURCE), target, out, force=True, options=options)
    return out


def agreement(artifact: Path) -> dict:
    """Agreement with PyTorch's logits on the bundled photos, through the artifact's harness."""
    from edgec.runners import HarnessCall
    from edgec.runners.local import LocalRunner

    x, reference = common.photos()
    inputs, outputs = WORK / "photos_in.npz", WORK / f"{artifact.name}_out.npz"
    np.savez(inputs, input=x)
    call = HarnessCall("infer", inputs={"--inputs": inputs}, outputs={"--outputs": outputs})
    result = LocalRunner().run_harness(artifact, call)
    if result.returncode:
        raise SystemExit(f"{artifact.name}: infer failed: {result.stderr[-500:]}")
    return common.agreement(np.load(outputs)["logits"], reference)


def measure(artifacts: dict[str, Path], rounds: int, iters: int) -> dict[str, dict]:
    from edgec import api

    samples = {name: [] for name in artifacts}
    for r in range(rounds):
        for name, path in artifacts.items():
            report = api.bench(path, warmup=3, iters=iters, threads=2)
            samples[name].append(report["p50_ms"])
        log(f"timing round {r + 1}/{rounds}: " + ", ".join(f"{n} {s[-1]:.2f} ms" for n, s in samples.items()))
    return {name: {"median_ms": float(np.median(s)), "round_p50_ms": [round(v, 3) for v in s]}
            for name, s in samples.items()}


def write(results: dict) -> None:
    lat = results.get("latency", {})
    ort = lat.get("onnxruntime-fp32", {}).get("median_ms")
    lines = [
        "# TVM tuning on MobileNetV2 (tvm-x86)", "",
        f"Machine: {results['machine']}; {results['threads']} threads; load average at the end "
        f"{results.get('load_average')} (1 min). Latency: median over {results['rounds']} interleaved rounds of each "
        f"artifact's `run.py bench` p50 ({results['iters']} iterations). Status: {results['status']}.", "",
        "| variant | trials (cumulative) | tuning time (this rung) | kernels with records | latency ms | vs onnxruntime | top-1 vs PyTorch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [("tvm-untuned", {"trials": 0})] + [(f"tvm-{r['trials']}", r) for r in results["rungs"]] + \
           [("onnxruntime-fp32", {})]
    for name, rung in rows:
        ms = lat.get(name, {}).get("median_ms")
        ratio = f"{ms / ort:.2f}x" if ms and ort else "-"
        tuning = f"{rung['tuning_s']:.0f} s ({rung['trials_run']} run)" if "tuning_s" in rung else "-"
        records = f"{rung['records']}/{rung['kernels']}" if "records" in rung else "-"
        acc = results.get("agreement", {}).get(name, {}).get("top1_agreement")
        lines.append(f"| {name} | {rung.get('trials', '-')} | {tuning} | {records} | "
                     f"{f'{ms:.2f}' if ms else 'not run'} | {ratio} | {f'{acc:.0%}' if acc is not None else '-'} |")
    common.write_results("tvm_tuning", results, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder", default="64,256,1024", help="cumulative trial counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="forget the database and results of earlier runs")
    args = parser.parse_args()
    ladder = sorted(int(n) for n in args.ladder.split(","))

    from edgec.backends.tvm import target as tvm_target
    from edgec.backends.tvm import tuning
    from edgec.targets import load_target

    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    state_file = WORK / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"rungs": []}
    results = {"model": "MobileNetV2 (ImageNet, 1x3x224x224)", "target": TARGET,
               "machine": common.cpu_name(),
               "threads": 2, "rounds": args.rounds, "iters": args.iters, "ladder": ladder,
               "status": "in progress", "rungs": state["rungs"]}

    artifacts = {"tvm-untuned": WORK / "tvm-untuned", "onnxruntime-fp32": WORK / "onnxruntime-fp32"}
    if not (artifacts["tvm-untuned"] / "edgec.json").exists():
        log("building untuned TVM")
        build("tvm-untuned", TARGET, tuning_db=str(WORK / "empty-db"))
    if not (artifacts["onnxruntime-fp32"] / "edgec.json").exists():
        build("onnxruntime-fp32", "onnxruntime")
    results["latency"] = measure(artifacts, 1, args.iters)
    write(results)

    llvm = tvm_target.resolve(load_target(TARGET))
    mod = relax_module()
    done = state["rungs"][-1]["trials"] if state["rungs"] else 0
    for trials in ladder:
        name = f"tvm-{trials}"
        artifacts[name] = WORK / name
        if trials <= done:
            continue
        log(f"rung {trials}: tuning {trials - done} more trials on top of {done}")
        report = tuning.tune(mod, llvm.tvm(), DB, trials - done, retune=True)
        build(name, TARGET, tuning_db=str(DB))
        rung = {"trials": trials, "trials_run": report.trials_run, "tuning_s": round(report.seconds, 1),
                "cumulative_tuning_s": round(report.seconds + (state["rungs"][-1]["cumulative_tuning_s"]
                                                               if state["rungs"] else 0.0), 1),
                "kernels": len(report.tasks), "records": report.records}
        state["rungs"].append(rung)
        state_file.write_text(json.dumps(state, indent=2))
        done = trials
        results["latency"].update(measure({name: artifacts[name]}, 1, args.iters))
        write(results)

    log("final timing, all variants interleaved")
    results["latency"] = measure({n: p for n, p in artifacts.items() if (p / "edgec.json").exists()},
                                 args.rounds, args.iters)
    results["agreement"] = {name: agreement(path) for name, path in artifacts.items()
                            if (path / "edgec.json").exists()}
    results["load_average"] = common.load_average()
    results["status"] = "complete"
    write(results)
    log(f"wrote {common.RESULTS / 'tvm_tuning.md'}")


if __name__ == "__main__":
    main()
