"""How build time and memory grow with node count: `edgec build -t onnxruntime` on chains of 1,000 to
16,000 nodes (MatMul+Relu and Conv+Relu pairs, tests/chains.py).

For each size: the CLI's wall time, the build's own time (manifest build.seconds, without Python's
start-up), the CPU seconds of the build and its harness (user + system, /usr/bin/time: on a shared
machine far steadier than wall time), the peak resident memory of the largest process, the CPU
seconds of the artifact's own `run.py verify` (the share of the build that its host verification
costs, run again alone: onnxruntime at ORT_ENABLE_ALL, as on the device) and, from an in-process run
of the optimizer, its slowest steps. Each doubling's CPU-time ratio is the measure of
linearity (the bar: at most 2.3x; 16,000 nodes in under 20 s).

    python benchmarks/scaling.py [--sizes 1000,2000,...] [--styles matmul,conv]
    # writes benchmarks/results/scaling.{md,json}
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from chains import STYLES, save_chain  # noqa: E402
from common import ROOT, cpu_name, load_average, write_results  # noqa: E402

SIZES = (1000, 2000, 4000, 8000, 16000)
SLOWEST = 4  # optimizer steps listed per size


def timed(command: list[str], usage: Path, **kwargs) -> tuple[float, float, int]:
    """Run `command` under /usr/bin/time: its wall seconds, CPU seconds (user + system) and peak KiB."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(usage), *command], capture_output=True,
                          text=True, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    wall, user, system, peak_kb = usage.read_text().split()[-4:]
    return float(wall), round(float(user) + float(system), 2), int(peak_kb)


def cli_build(model: Path, out: Path) -> dict:
    """One `edgec build` as a user runs it: wall, build and CPU seconds, and the peak memory of its largest process;
    then the artifact's host verification alone."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    load = load_average()
    wall, cpu, peak_kb = timed([sys.executable, "-m", "edgec", "build", "-t", "onnxruntime", str(model), "-o", str(out)],
                               out.with_suffix(".time"), env=env)
    manifest = json.loads((out / "edgec.json").read_text())
    _, harness_cpu, _ = timed([sys.executable, "-P", "run.py", "verify"], out.with_suffix(".verify.time"), cwd=out)
    return {"wall_s": wall, "build_s": manifest["build"]["seconds"], "cpu_s": cpu, "harness_cpu_s": harness_cpu,
            "peak_mb": round(peak_kb / 1024), "load_before": float(load),
            "nodes_after": manifest["build"]["passes"]["nodes_after"]}


def slowest_steps(model: Path) -> list[tuple[str, float]]:
    """The optimizer's slowest steps on `model` (in this process, without the output check)."""
    from edgec import ir as eir
    from edgec.passes import optimize

    _, report = optimize(eir.load(model))
    steps = sorted(report.guard.steps, key=lambda s: -s.seconds)[:SLOWEST]
    return [(s.name, round(s.seconds, 2)) for s in steps]


def markdown(rows: list[dict]) -> str:
    lines = ["# Build time and memory against node count (edgec build -t onnxruntime)", "",
             f"{cpu_name()}, 2 cores **shared with other engineers' jobs**: the 1-minute load before each build is in "
             "the table; times are noisy, ratios between neighbouring sizes of one run are the measure.", "",
             "| chain | nodes | CPU s | x per doubling | of it, host verification CPU s | build s (wall) | CLI wall s | "
             "peak MB | load | slowest optimizer steps (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        steps = ", ".join(f"{name} {seconds}" for name, seconds in row["slowest_steps"])
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") else ""
        lines.append(f"| {row['style']} | {row['nodes']} | {row['cpu_s']:.1f} | {ratio} | {row['harness_cpu_s']:.1f} | "
                     f"{row['build_s']:.1f} | "
                     f"{row['wall_s']:.1f} | {row['peak_mb']} | {row['load_before']:.1f} | {steps} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--styles", default=",".join(STYLES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-scaling-") as tmp:
        for style in args.styles.split(","):
            previous = None
            for nodes in map(int, args.sizes.split(",")):
                model = save_chain(nodes, style, Path(tmp))
                row = {"style": style, "nodes": nodes, **cli_build(model, Path(tmp) / f"{style}_{nodes}")}
                row["slowest_steps"] = slowest_steps(model)
                if previous is not None:
                    row["ratio"] = row["cpu_s"] / previous["cpu_s"] * previous["nodes"] / nodes * 2
                previous = row
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"rows": rows, "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_results("scaling", result, markdown(rows))


if __name__ == "__main__":
    main()
