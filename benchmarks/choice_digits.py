"""Hardware-aware choice on this machine: edgec compare on the digits CNN over three targets x fp32/int8,
and --precision auto on the 12-layer tanh CNN (models/digits/tanh_cnn.py) where int8 is slower.

Every row is built by edgec, verified, benched by its own harness in interleaved rounds (a row's
latency is its least disturbed round's p50) and evaluated on the 450 held-out digits.

    python benchmarks/choice_digits.py [--iters 200]

Writes benchmarks/results/choice_digits.json and .md.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

from common import ROOT, cpu_name, load_average, show_edgec_log, write_results

TARGETS = ["onnxruntime", "tflite-arm", "openvino-cpu"]


def main(iters: int) -> None:
    import numpy as np

    from edgec.choice import auto
    from edgec.choice.compare import compare
    from edgec.package.harness.manifest import to_json

    sys.path.insert(0, str(ROOT / "models" / "digits"))
    from tanh_cnn import train_tanh_cnn

    show_edgec_log()
    with tempfile.TemporaryDirectory(prefix="edgec-bench-choice-") as tmp:
        tmp = Path(tmp)
        with np.load(ROOT / "models" / "digits" / "split.npz") as split:
            np.savez(tmp / "eval.npz", input=split["x_test"], labels=split["y_test"])
        digits = ROOT / "models" / "digits"
        result = compare(str(digits / "digits_cnn.onnx"), TARGETS, ["fp32", "int8"], tmp / "cmp",
                         eval_data=str(tmp / "eval.npz"), calibration=str(digits / "calibration.npz"), iters=iters)
        tanh = train_tanh_cnn(tmp / "tanh")
        built = auto.build(str(tanh["model"]), "onnxruntime", tmp / "auto", calibration=str(tanh["calibration"]),
                           options={"eval_data": str(tanh["eval"]), "max_accuracy_drop": 50.0}, iters=iters)
        choice = built.manifest.choice
    machine = f"{cpu_name()}, {platform.machine()}, load {load_average()} (shared 2-core machine: noisy)"
    lines = [f"# Hardware-aware choice on digits ({machine})", "",
             "## edgec compare: digits CNN, 450 held-out digits", "",
             "| target | precision | size kB | p50 ms | p90 ms | accuracy % | Pareto | recommended |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, c in enumerate(result.candidates):
        f = c.figures
        lines.append(f"| {c.target} | {c.precision} | {f.size_bytes / 1e3:.1f} | {f.p50_ms:.3f} | {f.p90_ms:.3f} | "
                     f"{f.accuracy:.2f} | {'*' if c.pareto else ''} | {'<' if i == result.choice.index else ''} |")
    lines += ["", f"Recommended: {result.choice.why}", "",
              "## --precision auto: 12-layer tanh CNN, onnxruntime", "",
              "| precision | size kB | p50 ms | accuracy % |", "| --- | --- | --- | --- |"]
    for r in choice.candidates:
        lines.append(f"| {r.precision}{' (chosen)' if r.precision == choice.winner else ''} | "
                     f"{r.size_bytes / 1e3:.1f} | {r.p50_ms:.3f} | {r.accuracy:.2f} |")
    lines += ["", f"Why: {choice.why}", ""]
    write_results("choice_digits", {"compare": to_json(result), "auto": to_json(choice), "machine": machine},
                  "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    main(parser.parse_args().iters)
