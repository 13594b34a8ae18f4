"""Build every corpus model for every target and precision as a user would, and tabulate what happened.

For each model x target x precision: `edgec build` in a fresh process with a timeout (int8 calibrates
on the model's real inputs), its exit code and one-line message; for a build that succeeded, the
artifact's own `run.py infer` on the real inputs, the worst output error over the original's output
range, and the model's task fidelity against the original. Results go to
benchmarks/results/corpus_LABEL.json (rewritten after every cell, so an interrupted run resumes) and
corpus_LABEL.md.

Usage: python tools/corpus_matrix.py LABEL [--models a,b] [--targets t1,t2] [--precisions fp32,int8]
       [--timeout S] [--tvm-timeout S] [--device D] [--redo]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgec.errors import EdgecError  # noqa: E402
from models.corpus.measure import HarnessError, artifact_outputs, compare  # noqa: E402
from models.corpus.reference import reference_outputs  # noqa: E402
from models.corpus.registry import MODELS, CorpusModel  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ("onnxruntime", "openvino-cpu", "tvm-x86", "tflite-arm")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Cell:
    model: str
    target: str
    precision: str
    exit_code: int | None  # None: timed out
    message: str  # the one line edgec printed (or the timeout), empty on success
    build_s: float
    error_over_range: float | None = None
    worst_output: str | None = None
    task: float | None = None
    task_measure: str | None = None
    task_without_ties: float | None = None  # the task score with no tie at the precision's error (fidelity.py)
    infer_error: str | None = None


def one_line(stderr: str) -> str:
    """edgec's own message line, else its verification verdict, else the last line printed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("edgec:")]
    verdicts = [line for line in lines if line.startswith(("FAIL", "warning:"))]
    line = " / ".join(verdicts) if verdicts and not ours else (ours or lines or [""])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def build_command(model: CorpusModel, target: str, precision: str, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "edgec", "build", str(model.onnx_path), "-t", target, "-o", str(out),
           "--precision", precision, "--force", *model.build_flags()]
    if precision == "int8":
        cmd += ["--calibration", str(model.calibration_file(out.parent))]
    return cmd


def run_cell(model: CorpusModel, target: str, precision: str, timeout: float, reference, device: str) -> Cell:
    with tempfile.TemporaryDirectory(prefix="corpus-matrix-") as tmp:
        out = Path(tmp) / "artifact"
        start = time.perf_counter()
        try:
            proc = subprocess.run(build_command(model, target, precision, out), capture_output=True, text=True,
                                  timeout=timeout, cwd=ROOT, env={**os.environ, "COLUMNS": "400"})
        except subprocess.TimeoutExpired:
            return Cell(model.name, target, precision, None, f"timed out after {timeout:.0f} s", timeout)
        cell = Cell(model.name, target, precision, proc.returncode,
                    "" if proc.returncode == 0 else one_line(proc.stderr), round(time.perf_counter() - start, 1))
        if proc.returncode != 0:
            return cell
        try:
            comparison = compare(model, reference, artifact_outputs(model, out, timeout, device), precision)
        except (HarnessError, EdgecError, subprocess.TimeoutExpired) as exc:
            cell.infer_error = str(exc).splitlines()[0][:300]
            return cell
        cell.error_over_range, cell.worst_output = comparison.error_over_range, comparison.worst_output
        cell.task, cell.task_measure = comparison.task, model.fidelity.measure
        cell.task_without_ties = comparison.task_without_ties
        return cell


def cell_text(cell: dict) -> str:
    if cell["exit_code"] == 0:
        if cell["task"] is None:
            return f"built; infer failed: {cell['infer_error']}"
        untied = cell.get("task_without_ties")
        ties = f" ({untied:.3f} without ties)" if untied is not None and untied != cell["task"] else ""
        return f"ok: err {cell['error_over_range']:.1e}, task {cell['task']:.3f}{ties}"
    code = "timeout" if cell["exit_code"] is None else f"exit {cell['exit_code']}"
    return f"{code}: {cell['message']}".replace("|", "\\|")


def markdown(label: str, meta: dict, cells: list[dict]) -> str:
    lines = [f"# Corpus matrix: {label}", "",
             f"{meta['models']} real models x {len(meta['targets'])} targets x {len(meta['precisions'])} precisions, "
             f"edgec at git {meta['commit']}, {meta['machine']}, artifacts run on {meta.get('device', 'local')}, "
             f"load {meta['load']} at start; "
             f"run took {meta['wall_s'] / 60:.0f} min (shared, niced machine: times are noisy).",
             "Each cell: `edgec build` exit code and its one-line message, or for a build that succeeded the "
             "artifact's worst output error over the original's output range (`err`) and the task fidelity "
             "(`task`, the model's own measure, 1.0 = identical to the original) on the real inputs; a reduced "
             "precision's task counts as agreeing a class that fp32 rates within twice the precision's probability "
             "error of its best (models/corpus/fidelity.py), the score without such ties in brackets where it differs.",
             ""]
    summary = {}
    for cell in cells:
        key = "ok" if cell["exit_code"] == 0 else ("timeout" if cell["exit_code"] is None else f"exit {cell['exit_code']}")
        summary[key] = summary.get(key, 0) + 1
    lines += ["Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.items())), ""]
    for target in meta["targets"]:
        lines += [f"## {target}", "", "| model | " + " | ".join(meta["precisions"]) + " |",
                  "| --- |" + " --- |" * len(meta["precisions"])]
        for model in dict.fromkeys(c["model"] for c in cells):
            row = {c["precision"]: cell_text(c) for c in cells if c["model"] == model and c["target"] == target}
            lines.append(f"| {model} | " + " | ".join(row.get(p, "") for p in meta["precisions"]) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label")
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--tvm-timeout", type=float, default=420)
    parser.add_argument("--device", default="local", help="where the artifacts run (a --device value)")
    parser.add_argument("--redo", action="store_true", help="ignore cells already in the results file")
    args = parser.parse_args()
    models = [m for m in MODELS if m.name in args.models.split(",")]
    targets, precisions = args.targets.split(","), args.precisions.split(",")
    path = RESULTS / f"corpus_{args.label}.json"
    done = {} if args.redo or not path.exists() else {
        (c["model"], c["target"], c["precision"]): c for c in json.loads(path.read_text())["cells"]}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    meta = {"label": args.label, "commit": commit, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "load": Path("/proc/loadavg").read_text().split()[0], "models": len(models), "targets": targets,
            "precisions": precisions, "device": args.device, "wall_s": 0.0}
    start = time.perf_counter()
    cells = []
    for model in models:
        reference = reference_outputs(model)
        for target in targets:
            for precision in precisions:
                key = (model.name, target, precision)
                if key not in done:
                    timeout = args.tvm_timeout if target.startswith("tvm") else args.timeout
                    done[key] = asdict(run_cell(model, target, precision, timeout, reference, args.device))
                    print(f"{model.name:20s} {target:13s} {precision:5s} {cell_text(done[key])}", flush=True)
                cells.append(done[key])
                meta["wall_s"] = round(time.perf_counter() - start, 1)
                RESULTS.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"meta": meta, "cells": list(done.values())}, indent=1, sort_keys=True))
    path.write_text(json.dumps({"meta": meta, "cells": cells}, indent=1, sort_keys=True))
    path.with_suffix(".md").write_text(markdown(args.label, meta, cells))
    print(f"wrote {path.relative_to(ROOT)} and {path.with_suffix('.md').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
